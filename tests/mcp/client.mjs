// Drives `ragls mcp` with the official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`),
// a second implementation next to the Python one: it lists the tools and calls search_code.
//
// usage: node client.mjs RAGLS_BINARY WORKSPACE
// env:   RAGLS_MCP_NODE_MODULES — the node_modules folder holding the SDK (.ci/run installs it)
// Prints one JSON line with what it saw; exits non-zero with a message on the first miss.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [binary, workspace] = process.argv.slice(2);
const modules = process.env.RAGLS_MCP_NODE_MODULES;
const sdk = (p) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StdioClientTransport } = await sdk("client/stdio.js");

function check(cond, what) {
  if (!cond) {
    console.error(`mcp typescript client check failed: ${what}`);
    process.exit(1);
  }
}

const transport = new StdioClientTransport({
  command: binary,
  args: ["mcp", "--workspace", workspace],
  env: process.env,
  stderr: "inherit",
});
const client = new Client({ name: "ragls-test", version: "0.0.0" });
await client.connect(transport);

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
check(
  JSON.stringify(names) ===
    JSON.stringify(["ask", "index_status", "read_code", "reindex", "related_code", "search_code"]),
  `tool names ${names}`,
);
for (const t of tools) {
  check(t.inputSchema.type === "object", `${t.name}: an object schema`);
}

let result;
for (let i = 0; i < 100; i++) {
  // The first call may come before the background index has committed anything.
  result = await client.callTool({ name: "search_code", arguments: { query: "exponential backoff between attempts", top_k: 3 } });
  if (!result.isError && result.structuredContent.results.length > 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
check(!result.isError, `search_code ok: ${JSON.stringify(result.content)}`);
const top = result.structuredContent.results[0];
check(top.path === "src/net/retry.rs" && top.symbol.includes("retry_with_backoff"), `top hit ${JSON.stringify(top)}`);
check(result.content[0].type === "text" && result.content[0].text.includes("retry_with_backoff"), "text content names the function");

const bad = await client.callTool({ name: "search_code", arguments: { top_k: "x" } });
check(bad.isError === true, "a bad argument is a tool error");

await client.close();
console.log(JSON.stringify({ tools: names, top: `${top.path}:${top.start_line}-${top.end_line} ${top.symbol}` }));
