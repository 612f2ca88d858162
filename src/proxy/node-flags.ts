// The proxy's V8 heap settings. V8 reads them once, when it creates the heap, so the process
// cannot set them on itself: they go on node's command line wherever the proxy is started (the
// systemd unit, the dev stack, the relay memory bench; NODE_OPTIONS refuses --heap-growing-percent),
// and the proxy warns at start when it runs without them.
//
// Why: an idle spliced session retains ~2.8 KiB of heap once parked, but with Node's defaults the
// proxy's RSS grew ~14-16 KiB per session while 9,900 sessions were set up, and mostly stayed
// there: V8 let the old generation grow to ~3x what was live between full collections (its growing
// factor adapts up to 4x when they are cheap) and the young one to 2 x 16 MiB. With the growth at
// 1.5x and the young generation at 2 x 1 MiB: 6-7 KiB per session right after, ~3 once V8's memory
// reducer ran (9 and 5 after 256 KiB each way). The price: the proxy's CPU per brokering rose
// 22-34% in the brokering bench (more short-lived objects promoted, so more full collections), and
// brokerings are what a proxy's CPU runs out of first. --heap-growing-percent=50 alone cost none
// measurable there but gave 9.1 KiB (idle) and 12.0 (bulk) per session: the trade is the
// operator's (bench/relay-memory.ts, README "Benchmarks", relay memory).

/** Node flags the proxy runs with. */
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--heap-growing-percent=50'];

/** The flags node's command line lacks; empty when the proxy runs tuned. */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(execArgv.map((f) => f.replaceAll('_', '-')));
  return PROXY_NODE_FLAGS.filter((f) => !given.has(f));
}
