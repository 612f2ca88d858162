import { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { createActor, fromCallback, fromPromise, type InspectionEvent } from 'xstate';
import { brokeringMachine, type BrokeringEvent, type BrokeringInput, type NotifyResult, type SplicerEvent, type SplicerInput } from '../machines/brokering.js';
import { brokeringFeed } from '../src/inspector/feeds.js';
import { SessionLog } from '../src/inspector/session-log.js';
import type { SessionRegistryOptions } from '../src/proxy/session-registry.js';
import { DEFAULT_INSPECTOR_MAX_FINISHED, DEFAULT_INSPECTOR_MAX_TIMELINE } from '../src/core/constants.js';
import { runSoak } from './soak.js';
import { splicedPair, stream } from './splice-throughput.js';

// What the live inspector costs the proxy, three ways, each with the inspector off, enabled with
// nobody watching, and watched (a subscriber that serialises every batch as the event stream
// does):
// - the brokering machine alone (its bus calls and splicer stubbed, no sockets), which isolates
//   the CPU the inspection adds to each session: XState's inspection events and our log;
// - the soak (same seed, so the same brokerings and faults through real sockets), CPU per
//   brokering, which includes both ends of every connection;
// - a 512 MiB stream through the splice, which counts each relayed chunk.
// Rounds alternate between the modes so that each sees the same machine load; the median and the
// range of the rounds are reported. `npm run bench:inspector` (BENCH_ROUNDS, SOAK_COUNT).

/** `xstate`: a no-op inspect hook, which is XState's own share of the cost. */
type Mode = 'off' | 'xstate' | 'unwatched' | 'watched';
const MODES: Mode[] = ['off', 'xstate', 'unwatched', 'watched'];

/**
 * The brokering machine with no I/O: B accepts at once, A is confirmed at once, and the splicer
 * only hands out its way to report the end of the splice. Also used by the inspector's tests.
 */
export function stubbedBrokeringMachine() {
  let report: ((e: BrokeringEvent) => void) | undefined;
  const machine = brokeringMachine.provide({
    actors: {
      notifyB: fromPromise<NotifyResult, BrokeringInput>(async () => ({ accepted: true })),
      confirmToA: fromPromise<void, BrokeringInput>(async () => {}),
      splicer: fromCallback<SplicerEvent, SplicerInput>(({ sendBack }) => {
        report = sendBack;
      }),
    },
  });
  return { machine, endSplice: (e: BrokeringEvent) => report!(e) };
}

/** A brokering from request to closed on the stubbed machine. */
const stubbed = (() => {
  const { machine, endSplice } = stubbedBrokeringMachine();
  const socket = new Socket();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) await null;
  };
  return async (i: number, inspect: ((ev: InspectionEvent) => void) | undefined): Promise<void> => {
    const actor = createActor(machine, { input: { sessionId: `s${i}`, a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:9999' }, ...(inspect ? { inspect } : {}) });
    actor.start();
    await settle();
    actor.send({ type: 'B_DIALED', socket, rest: new Uint8Array(0) });
    await settle();
    actor.send({ type: 'A_DIALED', socket, rest: new Uint8Array(0) });
    endSplice({ type: 'SPLICE_ENDED', reason: 'completed', bytesAToB: 1, bytesBToA: 1 });
    if (actor.getSnapshot().status !== 'done') throw new Error('stubbed brokering did not finish');
  };
})();

async function machineRound(mode: Mode, count: number): Promise<number> {
  const { hooks, stop } = hooksFor(mode);
  global.gc?.();
  const cpu = process.cpuUsage();
  for (let i = 0; i < count; i++) await stubbed(i, hooks.inspect);
  const used = process.cpuUsage(cpu);
  stop();
  return (used.user + used.system) / count;
}

function hooksFor(mode: Mode): { hooks: Pick<SessionRegistryOptions, 'inspect' | 'onRelayed'>; stop: () => void } {
  if (mode === 'off') return { hooks: {}, stop: () => {} };
  if (mode === 'xstate') return { hooks: { inspect: () => {} }, stop: () => {} };
  const log = new SessionLog({ maxFinished: DEFAULT_INSPECTOR_MAX_FINISHED, maxTimeline: DEFAULT_INSPECTOR_MAX_TIMELINE });
  const feed = brokeringFeed(log);
  let pushed = 0;
  const stop = mode === 'watched' ? log.subscribe((changes) => (pushed += JSON.stringify(changes).length)) : () => {};
  // As public-proxy.ts wires it (the metrics counter it also calls is there in every mode).
  return { hooks: { inspect: feed.inspect, onRelayed: feed.relayed }, stop: () => (stop(), void pushed) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
const vsOff = (x: number, off: number): string => `${x >= off ? '+' : ''}${((x / off - 1) * 100).toFixed(1)}%`;

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

/** The per-chunk hook alone: what each relayed chunk costs, in ns. */
function relayedCost(mode: Mode, calls: number): number {
  const { hooks, stop } = hooksFor(mode);
  const relayed = hooks.onRelayed;
  if (!relayed) return 0;
  // A live session to count against, as during a splice.
  hooks.inspect?.({ type: '@xstate.snapshot', rootId: 'r', actorRef: { sessionId: 'r' }, event: { type: 'xstate.init' }, snapshot: { value: 'x', status: 'active', context: { sessionId: 'live', a: 'a', b: 'b' } } } as unknown as InspectionEvent);
  const started = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) relayed(i & 1 ? 'aToB' : 'bToA', 65536, 'live');
  const ns = Number(process.hrtime.bigint() - started) / calls;
  stop();
  return ns;
}

async function streamRound(mode: Mode): Promise<number> {
  const { hooks, stop } = hooksFor(mode);
  const pair = await splicedPair(hooks);
  // No mode pays for the garbage of the round before it.
  global.gc?.();
  const s = await stream(pair.a, pair.b);
  await pair.close();
  stop();
  return s.bytes / (1024 * 1024) / (s.ms / 1000);
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const count = Number(process.env.SOAK_COUNT ?? 2000);
  const perMode = <T>(make: () => T): Record<Mode, T> => Object.fromEntries(MODES.map((m) => [m, make()])) as Record<Mode, T>;
  const soak = perMode(() => ({ cpu: [] as number[], rate: [] as number[] }));
  const streams = perMode((): number[] => []);
  const machine = perMode((): number[] => []);
  const chunk = perMode((): number[] => []);
  const machineCount = 20_000;
  console.log(`inspector cost: ${rounds} rounds of ${machineCount} stubbed brokerings, a ${count}-brokering soak and a 512 MiB splice stream per mode`);
  for (const mode of MODES) await machineRound(mode, 2000); // warm-up
  for (let r = 0; r < rounds; r++) {
    // Rotate the order so no mode always runs first (cold) or last.
    const order = MODES.map((_, i) => MODES[(i + r) % MODES.length]!);
    for (const mode of order) {
      machine[mode].push(await machineRound(mode, machineCount));
      chunk[mode].push(relayedCost(mode, 2_000_000));
      const s = await soakRound(mode, count);
      soak[mode].cpu.push(s.cpuMsPerBrokering);
      soak[mode].rate.push(s.perSecond);
      streams[mode].push(await streamRound(mode));
    }
    console.log(`  round ${r + 1} done`);
  }
  const base = { machine: median(machine.off), cpu: median(soak.off.cpu), stream: median(streams.off) };
  console.log('median (range over the rounds), and the change against off:');
  for (const mode of MODES) {
    const m = median(machine[mode]);
    const cpu = median(soak[mode].cpu);
    const mibps = median(streams[mode]);
    console.log(`${mode}${mode === 'xstate' ? ' (a no-op inspect hook: XState alone)' : ''}:`);
    console.log(`  machine alone  ${m.toFixed(1)} µs CPU per brokering (${range(machine[mode], 1)}), ${vsOff(m, base.machine)}, ${(m - base.machine).toFixed(1)} µs`);
    console.log(`  soak           ${(cpu * 1000).toFixed(0)} µs CPU per brokering (${range(soak[mode].cpu.map((x) => x * 1000), 0)}), ${vsOff(cpu, base.cpu)}, ${((cpu - base.cpu) * 1000).toFixed(0)} µs; ${median(soak[mode].rate).toFixed(0)} brokerings/s`);
    console.log(`  splice stream  ${mibps.toFixed(0)} MiB/s (${range(streams[mode], 0)}), ${vsOff(mibps, base.stream)}`);
    console.log(`  per chunk      ${median(chunk[mode]).toFixed(0)} ns in the relayed-bytes hook (${range(chunk[mode], 0)})`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
