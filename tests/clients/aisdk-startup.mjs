// A benchmark: connects to dicomweb-mcp over stdio with the Vercel AI SDK's MCP client (@ai-sdk/mcp), lists
// the tools, prints how many there are and how long it took, and exits non-zero on failure.
//
//   bash scripts/setup.sh   # or: cd tests/clients && npm ci
//   node tests/clients/aisdk-startup.mjs [--runs 5] [--python PATH] [--cwd DIR] [--no-discovery]
//
// The AI SDK sends `server/discover` first and waits 1 s for it over stdio before falling back to
// `initialize`, so a slow start-up shows here as the 2025-11-25 era instead of 2026-07-28 (and as a failed
// connection with a server that refuses initialize after discover). --no-discovery sets the client's
// `protocolVersionDiscovery: false` (initialize only). The server is launched as
// `PYTHON -m dicomweb_mcp` (PYTHON: --python, else $PYTHON, else ../../.venv/bin/python) in --cwd (default:
// the repository root), with DICOMWEB_URL pointing at a closed local port: nothing is contacted.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { createMCPClient } from "@ai-sdk/mcp";
import { StdioMCPTransport } from "@ai-sdk/mcp/mcp-stdio";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    python: { type: "string", default: process.env.PYTHON ?? join(repo, ".venv", "bin", "python") },
    cwd: { type: "string", default: repo },
    "no-discovery": { type: "boolean", default: false },
  },
});
const runs = Number.parseInt(values.runs, 10);
if (!Number.isInteger(runs) || runs < 1) {
  console.error("aisdk-startup.mjs: --runs must be a positive integer");
  process.exit(2);
}

async function connectOnce() {
  const downloads = mkdtempSync(join(tmpdir(), "dicomweb-mcp-aisdk-"));
  const started = performance.now();
  let client;
  try {
    client = await createMCPClient({
      transport: new StdioMCPTransport({
        command: values.python,
        args: ["-m", "dicomweb_mcp"],
        cwd: values.cwd,
        // The transport passes on only HOME, LOGNAME, PATH, SHELL, TERM, USER besides these.
        env: { DICOMWEB_URL: "http://127.0.0.1:9/dicom-web", DICOMWEB_DOWNLOAD_DIR: downloads },
      }),
      protocolVersionDiscovery: !values["no-discovery"],
    });
    const connected = performance.now();
    const tools = await client.tools();
    const listed = performance.now();
    return {
      ok: true,
      era: client.initializeResult?.protocolVersion,
      tools: Object.keys(tools).length,
      connectMs: connected - started,
      totalMs: listed - started,
    };
  } catch (error) {
    return { ok: false, error, totalMs: performance.now() - started };
  } finally {
    await client?.close();
    rmSync(downloads, { recursive: true, force: true });
  }
}

let failures = 0;
for (let run = 1; run <= runs; run++) {
  const result = await connectOnce();
  if (result.ok) {
    console.log(
      `run ${run}: ok (${result.era}), ${result.tools} tools, connected in ${(result.connectMs / 1000).toFixed(3)} s, ` +
        `tools listed at ${(result.totalMs / 1000).toFixed(3)} s`,
    );
  } else {
    failures++;
    const { error } = result;
    const code = error?.code != null ? ` (code ${error.code})` : "";
    console.log(`run ${run}: FAILED after ${(result.totalMs / 1000).toFixed(3)} s: ${error?.message ?? error}${code}`);
  }
}
console.log(`${runs - failures}/${runs} connected`);
process.exit(failures === 0 ? 0 : 1);
