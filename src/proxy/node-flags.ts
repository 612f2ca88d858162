// The proxy's V8 heap settings. V8 reads them once, when it creates the heap, so the process
// cannot set them on itself: they go on node's command line wherever the proxy is started (the
// systemd unit, the dev stack, the relay memory bench; NODE_OPTIONS refuses --heap-growing-percent),
// and the proxy warns at start when it runs without them.
//
// Why: an idle spliced session retains ~2.8 KiB of heap once parked, but with Node's defaults the
// proxy's RSS grew ~14-16 KiB per session while 9,900 sessions were set up, and mostly stayed
// there: V8 let the old generation grow to ~3x what was live between full collections (its growing
// factor adapts up to 4x when they are cheap) and the young one to 2 x 16 MiB. With the growth at
// 1.5x and the young generation at most 2 x 4 MiB: ~7 KiB per session right after, ~3 once V8's
// memory reducer ran. The young generation's size is a CPU trade: at 2 x 1 MiB (the first choice
// here) the same memory, but every short-lived object of a brokering in flight at a scavenge was
// promoted, and the proxy spent ~0.5 ms more CPU per brokering at 50 concurrent requesters (12%);
// at 2 x 8 MiB ~1 KiB more per session for no CPU measurably saved. --heap-growing-percent=50
// alone: 9.1 KiB (idle) and 12.0 (bulk) per session. (bench/relay-memory.ts,
// bench/brokering.ts; README "Benchmarks", relay memory.)

/** Node flags the proxy runs with. */
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=50'];

/** The flags node's command line lacks; empty when the proxy runs tuned. */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(execArgv.map((f) => f.replaceAll('_', '-')));
  return PROXY_NODE_FLAGS.filter((f) => !given.has(f));
}
