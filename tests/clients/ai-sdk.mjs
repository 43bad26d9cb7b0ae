// Connects with the Vercel AI SDK's MCP client (@ai-sdk/mcp), which sends server/discover before it falls
// back to initialize, calls one tool, and prints {serverName, protocolVersion, isError, structuredContent}:
// see common.mjs for the spec.
import { createMCPClient } from "@ai-sdk/mcp";
import { StdioMCPTransport } from "@ai-sdk/mcp/mcp-stdio";

import { authorization, readSpec, report } from "./common.mjs";

const spec = readSpec();
const transport = spec.stdio
  ? new StdioMCPTransport(spec.stdio)
  : { type: "http", url: spec.http.url, headers: authorization(spec) };

await report(async () => {
  let client;
  try {
    client = await createMCPClient({ transport });
    const result = await client.callTool({ name: spec.tool, arguments: spec.arguments ?? {} });
    return {
      serverName: client.serverInfo?.name,
      protocolVersion: client.initializeResult?.protocolVersion,
      isError: result.isError === true,
      structuredContent: result.structuredContent,
    };
  } finally {
    await client?.close();
  }
});
