// The host side of MCP Apps for the viewer's browser tests, from the official @modelcontextprotocol/ext-apps
// app bridge: bundled for the browser by tests/support/viewer_host.py, loaded into a page that embeds the
// viewer as hosts do (a sandboxed iframe without same-origin), and wired to the real server through
// functions the test exposes (hostCallTool). What the app tells the host is kept in window.host for checks.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

window.host = { modelContext: [], sizes: [], resultSentAt: null };

window.startViewer = async ({ html, toolInput, toolResult, theme, frameWidth }) => {
  const iframe = document.createElement("iframe");
  iframe.id = "viewer";
  iframe.setAttribute("sandbox", "allow-scripts");
  iframe.style.width = frameWidth + "px";
  iframe.style.height = "600px";
  iframe.style.border = "0";
  document.body.append(iframe);

  const bridge = new AppBridge(
    null,
    { name: "dicomweb-mcp test host", version: "1.0.0" },
    { serverTools: {}, updateModelContext: { text: {}, structuredContent: {} }, logging: {} },
    { hostContext: { theme, displayMode: "inline", platform: "web" } },
  );
  bridge.oncalltool = async (params) => window.hostCallTool(params.name, params.arguments || {});
  bridge.onupdatemodelcontext = async (params) => {
    window.host.modelContext.push(params);
    return {};
  };
  bridge.onsizechange = ({ height }) => {
    if (height) iframe.style.height = height + "px";
    window.host.sizes.push(height);
  };
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = () => resolve();
  });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  // As hosts do by default: no network at all, inline script and style, pictures only from data: URLs.
  iframe.srcdoc = html.replace("<head>", `<head><meta http-equiv="Content-Security-Policy" content="${CSP}">`);
  await initialized;
  await bridge.sendToolInput({ arguments: toolInput });
  window.host.resultSentAt = performance.timeOrigin + performance.now();
  await bridge.sendToolResult(toolResult);
  window.host.bridge = bridge;
};

window.setTheme = (theme) => window.host.bridge.sendHostContextChange({ theme });
window.setStyles = (variables) => window.host.bridge.sendHostContextChange({ styles: { variables } });
