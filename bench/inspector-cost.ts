import { pathToFileURL } from 'node:url';
import { brokeringFeed } from '../src/inspector/feeds.js';
import { SessionLog } from '../src/inspector/session-log.js';
import type { SessionRegistryOptions } from '../src/proxy/session-registry.js';
import { DEFAULT_INSPECTOR_MAX_FINISHED, DEFAULT_INSPECTOR_MAX_TIMELINE } from '../src/core/constants.js';
import { runSoak } from './soak.js';
import { splicedPair, stream } from './splice-throughput.js';

// What the live inspector costs the proxy: the same soak (same seed, so the same brokerings and
// faults) and the same bulk stream through the splice, with the inspector off, enabled with
// nobody watching, and watched (a subscriber that serialises every batch as the event stream
// does). Rounds alternate between the modes so that each sees the same machine load; the median
// of the rounds is reported. `npm run bench:inspector` (BENCH_ROUNDS, SOAK_COUNT to change).

type Mode = 'off' | 'unwatched' | 'watched';
const MODES: Mode[] = ['off', 'unwatched', 'watched'];

function hooksFor(mode: Mode): { hooks: Pick<SessionRegistryOptions, 'inspect' | 'onRelayed'>; stop: () => void } {
  if (mode === 'off') return { hooks: {}, stop: () => {} };
  const log = new SessionLog({ maxFinished: DEFAULT_INSPECTOR_MAX_FINISHED, maxTimeline: DEFAULT_INSPECTOR_MAX_TIMELINE });
  const feed = brokeringFeed(log);
  let pushed = 0;
  const stop = mode === 'watched' ? log.subscribe((changes) => (pushed += JSON.stringify(changes).length)) : () => {};
  // As public-proxy.ts wires it (the metrics counter it also calls is there in every mode).
  return { hooks: { inspect: feed.inspect, onRelayed: feed.relayed }, stop: () => (stop(), void pushed) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function soakRound(mode: Mode, count: number): Promise<{ cpuMsPerBrokering: number; perSecond: number; heapMiB: number }> {
  const { hooks, stop } = hooksFor(mode);
  const cpu = process.cpuUsage();
  const s = await runSoak({ count, concurrency: 100, seed: 7, hooks });
  const used = process.cpuUsage(cpu);
  stop();
  if (s.leaked) throw new Error(`soak leaked in mode ${mode}: ${JSON.stringify(s.leaks)}`);
  // A fault that lands on the other side of a deadline under load is the soak's business, not ours.
  if (s.mismatches > 0) console.log(`  (${mode}: ${s.mismatches} brokerings ended otherwise than their fault implies: ${s.examples[0]})`);
  return { cpuMsPerBrokering: (used.user + used.system) / 1000 / count, perSecond: count / (s.durationMs / 1000), heapMiB: s.heapAfterMiB };
}

async function streamRound(mode: Mode): Promise<number> {
  const { hooks, stop } = hooksFor(mode);
  const pair = await splicedPair(hooks);
  const s = await stream(pair.a, pair.b);
  await pair.close();
  stop();
  return s.bytes / (1024 * 1024) / (s.ms / 1000);
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const count = Number(process.env.SOAK_COUNT ?? 2000);
  const soak: Record<Mode, { cpu: number[]; rate: number[] }> = { off: { cpu: [], rate: [] }, unwatched: { cpu: [], rate: [] }, watched: { cpu: [], rate: [] } };
  const streams: Record<Mode, number[]> = { off: [], unwatched: [], watched: [] };
  console.log(`inspector cost: ${rounds} rounds of a ${count}-brokering soak and a 512 MiB splice stream per mode`);
  for (let r = 0; r < rounds; r++) {
    // Rotate the order so no mode always runs first (cold) or last.
    const order = MODES.map((_, i) => MODES[(i + r) % MODES.length]!);
    for (const mode of order) {
      const s = await soakRound(mode, count);
      soak[mode].cpu.push(s.cpuMsPerBrokering);
      soak[mode].rate.push(s.perSecond);
      streams[mode].push(await streamRound(mode));
    }
    console.log(`  round ${r + 1} done`);
  }
  const base = { cpu: median(soak.off.cpu), stream: median(streams.off) };
  for (const mode of MODES) {
    const cpu = median(soak[mode].cpu);
    const mibps = median(streams[mode]);
    console.log(
      `${mode.padEnd(10)} soak: ${cpu.toFixed(3)} ms CPU per brokering (${((cpu / base.cpu - 1) * 100).toFixed(1)}% vs off), ` +
        `${median(soak[mode].rate).toFixed(0)} brokerings/s; stream: ${mibps.toFixed(0)} MiB/s (${((mibps / base.stream - 1) * 100).toFixed(1)}% vs off)`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
