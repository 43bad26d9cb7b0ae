// Connects with the official TypeScript SDK's Client (stdio or streamable HTTP), calls one tool, and prints
// {serverName, isError, structuredContent}: see common.mjs for the spec.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import { authorization, readSpec, report } from "./common.mjs";

const spec = readSpec();
const transport = spec.stdio
  ? new StdioClientTransport({ ...spec.stdio, stderr: "inherit" })
  : new StreamableHTTPClientTransport(new URL(spec.http.url), {
      requestInit: { headers: authorization(spec) },
    });
const client = new Client({ name: "dicomweb-mcp-tests", version: "1.0.0" });

await report(async () => {
  try {
    await client.connect(transport);
    const result = await client.callTool({ name: spec.tool, arguments: spec.arguments ?? {} });
    return {
      serverName: client.getServerVersion()?.name,
      isError: result.isError === true,
      structuredContent: result.structuredContent,
    };
  } finally {
    await client.close();
  }
});
