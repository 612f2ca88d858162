// The proxy's V8 heap settings. V8 reads them once, when it creates the heap, so the process
// cannot set them on itself: they go on node's command line wherever the proxy is started (the
// systemd unit, the dev stack, the relay memory bench; NODE_OPTIONS refuses --heap-growing-percent),
// and the proxy warns at start when it runs without them.
//
// Why: an idle spliced session retains ~2.8 KiB of heap once parked, but with Node's defaults the
// proxy's RSS grew ~14-16 KiB per session while 9,900 sessions were set up, and stayed there. V8
// let the old generation grow to ~3x what was live between full collections (its growing factor
// adapts up to 4x when they are cheap), the young generation grew to 2 x 16 MiB, and nothing after
// the burst made V8 give that back. With these flags the growth is 1.5x and the young generation
// stays at 2 x 1 MiB: 6.1 KiB per session right after, 3.1 once V8's memory reducer ran, for ~36%
// more CPU per handshake, spent in the collector (bench/relay-memory.ts, README "Benchmarks",
// relay memory, with the other settings tried).

/** Node flags the proxy runs with. */
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--heap-growing-percent=50'];

/** The flags node's command line lacks; empty when the proxy runs tuned. */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(execArgv.map((f) => f.replaceAll('_', '-')));
  return PROXY_NODE_FLAGS.filter((f) => !given.has(f));
}
