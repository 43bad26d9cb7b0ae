// What every client script here shares: the connection spec the Python test passes as argv[2], a hard
// deadline, and one JSON line on stdout that the test reads.
//
// The spec: {"stdio": {"command", "args", "env"}} or {"http": {"url", "token"}}, plus "tool", "arguments"
// and "timeoutMs". Exit 0 when the tool ran without error, 1 when anything failed, 3 on the deadline.

export function readSpec() {
  const spec = JSON.parse(process.argv[2] ?? "{}");
  if (!spec.stdio && !spec.http) {
    console.error("usage: node SCRIPT.mjs '{\"stdio\": {...} | \"http\": {...}, \"tool\": ..., \"arguments\": {...}}'");
    process.exit(2);
  }
  // A hung connection must fail the test with a reason, not hang it: unref'd, so it never holds the process.
  setTimeout(() => {
    console.error(`no answer within ${spec.timeoutMs ?? 30000} ms`);
    process.exit(3);
  }, spec.timeoutMs ?? 30000).unref();
  return spec;
}

export function authorization(spec) {
  return spec.http.token ? { Authorization: `Bearer ${spec.http.token}` } : {};
}

export async function report(run) {
  try {
    const outcome = await run();
    console.log(JSON.stringify(outcome));
    process.exit(outcome.isError ? 1 : 0);
  } catch (error) {
    const code = error?.code != null ? ` (code ${error.code})` : "";
    console.log(JSON.stringify({ failed: `${error?.message ?? error}${code}` }));
    process.exit(1);
  }
}
