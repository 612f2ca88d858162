import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { BROKERING_OUTCOMES, type BrokeringOutcome, type NotifyResult } from '../machines/brokering.js';
import { TOKEN_BYTES } from '../src/core/constants.js';
import { encodePreamble, signProof, type Leg } from '../src/core/splice-wire.js';
import { fingerprintOf } from '../src/core/tls-material.js';
import { SessionRegistry, type LegPass, type SessionInfo, type SessionRegistryOptions } from '../src/proxy/session-registry.js';
import { REJECT_REASONS, SpliceEndpoint, type RejectReason } from '../src/proxy/splice-endpoint.js';
import { TokenStore } from '../src/proxy/token-store.js';

// Many brokerings through the real registry, endpoint and splicer on loopback, each with one
// fault drawn at random, then a count of everything the proxy might have kept: sessions, tokens,
// unrouted sockets, TCP handles and timers. A leak here is one per N brokerings in production.
// B and A are in-process drivers that dial real TCP where the bus would have told them to, each
// proving its leg with a dev operator key (hd-2's for every B, hd-1's for every A).

/** What goes wrong in one brokering, and the final state and refusal it must end with. */
export const FAULTS = {
  none: { outcome: 'closed', rejection: undefined },
  bRefuses: { outcome: 'bRefused', rejection: undefined },
  bNotPermitted: { outcome: 'bNotPermitted', rejection: undefined },
  busFails: { outcome: 'busFailed', rejection: undefined },
  confirmFails: { outcome: 'busFailed', rejection: undefined },
  bNeverDials: { outcome: 'bNeverDialed', rejection: undefined },
  aNeverDials: { outcome: 'aNeverDialed', rejection: undefined },
  wrongToken: { outcome: 'closed', rejection: 'UNKNOWN_TOKEN' },
  aDialsEarly: { outcome: 'closed', rejection: 'WRONG_STATE' },
  tokenReused: { outcome: 'closed', rejection: 'TOKEN_USED' },
  /** Someone with B's token but not B's key dials first; the real B still gets through. */
  stolenToken: { outcome: 'closed', rejection: 'BAD_PROOF' },
  oversizedProof: { outcome: 'closed', rejection: 'PREAMBLE_INVALID' },
  bClosesBeforeSplice: { outcome: 'peerClosedEarly', rejection: undefined },
  aClosesMidPreamble: { outcome: 'aNeverDialed', rejection: 'PREAMBLE_CLOSED' },
  garbagePreamble: { outcome: 'aNeverDialed', rejection: 'PREAMBLE_TIMEOUT' },
  closeAfterSplice: { outcome: 'closed', rejection: undefined },
  stuckUntilShutdown: { outcome: 'shutDown', rejection: undefined },
} as const satisfies Record<string, { outcome: BrokeringOutcome; rejection: RejectReason | undefined }>;

export type Fault = keyof typeof FAULTS;
export const FAULT_NAMES = Object.keys(FAULTS) as Fault[];

export interface SoakOptions {
  count: number;
  concurrency?: number;
  seed?: number;
  /** Short, so the timeout faults cost little; the success paths need only a few ms. */
  timeouts?: { bDialMs?: number; aDialMs?: number; preambleMs?: number };
  /** Called every `every` brokerings, for a progress line. */
  progress?: { every: number; report: (done: number) => void };
  /** Hooks added to the registry as the proxy adds them (bench/inspector-cost.ts: the inspector's). */
  hooks?: Pick<SessionRegistryOptions, 'inspect' | 'onRelayed'>;
}

export interface SoakLeaks {
  liveSessions: number;
  unroutedSockets: number;
  liveTokens: number;
  clientSockets: number;
  tcpHandles: number;
  timers: number;
  endpointCloseHung: boolean;
}

export interface SoakSummary {
  brokerings: number;
  concurrency: number;
  seed: number;
  timeouts: { bDialMs: number; aDialMs: number; preambleMs: number };
  durationMs: number;
  faults: Record<Fault, number>;
  outcomes: Record<BrokeringOutcome, number>;
  rejections: Record<RejectReason, number>;
  expectedRejections: Record<RejectReason, number>;
  /** Brokerings whose final state was not the one their fault implies (first few in `examples`). */
  mismatches: number;
  examples: string[];
  leaks: SoakLeaks;
  leaked: boolean;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** After a forced GC when run with --expose-gc: growth here (unlike RSS) means retained objects. */
  heapBeforeMiB: number;
  heapAfterMiB: number;
  /** Open to spliced, for the fault-free brokerings (in-process, so no bus round trips). */
  splicedAfterMs: { p50: number; p99: number; count: number };
}

const PROXY = 'soak-proxy';
const CERTS = 'settings/dev/certs';
const legKeys = {
  a: { key: createPrivateKey(readFileSync(`${CERTS}/hd-1.key`)), cert: new X509Certificate(readFileSync(`${CERTS}/hd-1.crt`)) },
  b: { key: createPrivateKey(readFileSync(`${CERTS}/hd-2.key`)), cert: new X509Certificate(readFileSync(`${CERTS}/hd-2.crt`)) },
};
/** Every a-N is listed with hd-1's certificate, every b-N with hd-2's. */
function certificateOf(operator: string): { certificate: string; fingerprint: string } | undefined {
  const leg = operator.startsWith('a-') ? 'a' : operator.startsWith('b-') ? 'b' : undefined;
  if (!leg) return undefined;
  const { cert } = legKeys[leg];
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
}
/** The preamble a leg's real dialer sends. */
function preambleOf(session: SessionInfo, leg: Leg, pass: LegPass): Buffer {
  const proof = signProof(legKeys[leg].key, { proxy: PROXY, sessionId: session.sessionId, leg, token: pass.token, challenge: pass.challenge });
  return encodePreamble(pass.token, proof);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! * 100) / 100;
}

/** A small seeded PRNG (mulberry32), so a failing soak can be rerun with the same faults. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function counts<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** `promise` raced against a timer that is cleared either way, so no timer outlives the race. */
function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const handleCount = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

interface Plan {
  index: number;
  fault: Fault;
  bSocket?: Socket;
  aSocket?: Socket;
  spliced: ReturnType<typeof deferred<void>>;
  openedAt: number;
  splicedAt?: number;
  /** Resolved once a stuck session holds B's socket. */
  held: ReturnType<typeof deferred<void>>;
  /** Client-side work (A's dial, the exchange); the brokering is over when it and `done` are. */
  work: Promise<unknown>[];
}

export async function runSoak(options: SoakOptions): Promise<SoakSummary> {
  const concurrency = options.concurrency ?? 200;
  const seed = options.seed ?? 1;
  // Short enough that the timeout faults cost little, long enough that a loaded 2-core machine
  // still gets a well-behaved dialer through: at 250 ms, a load average of 9 made an honest
  // 32-byte preamble miss its deadline about once in 10,000 brokerings.
  const bDialMs = options.timeouts?.bDialMs ?? 2_000;
  const aDialMs = options.timeouts?.aDialMs ?? 2_000;
  const preambleMs = options.timeouts?.preambleMs ?? 500;
  const random = prng(seed);
  const log = pino({ level: 'silent' });

  if (global.gc) global.gc();
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  const tcpBefore = handleCount('TCPSocketWrap');
  const timersBefore = handleCount('Timeout');
  const started = Date.now();

  const plans = new Map<string, Plan>();
  const clients = new Set<Socket>();
  const rejections = counts(REJECT_REASONS);
  const outcomes = counts(BROKERING_OUTCOMES);
  const faults = counts(FAULT_NAMES);
  const expectedRejections = counts(REJECT_REASONS);
  const examples: string[] = [];
  let mismatches = 0;
  const mismatch = (text: string) => {
    mismatches += 1;
    if (examples.length < 10) examples.push(text);
  };
  let port = 0;

  /** A client socket of B or A; the proxy must close every one it does not splice and keep. */
  async function dial(): Promise<Socket> {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    socket.on('error', () => {});
    clients.add(socket);
    socket.once('close', () => clients.delete(socket));
    await once(socket, 'connect');
    return socket;
  }
  /** Resolves once the proxy hung up on `socket` (or it closed), false if it did not in time. */
  function closedByProxy(socket: Socket, ms = 5_000): Promise<boolean> {
    if (socket.closed) return Promise.resolve(true);
    socket.resume();
    // Not events.once: it rejects on 'error', and an RST (ECONNRESET) is a hang-up too.
    return within(new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))), ms, false);
  }
  function readExactly(socket: Socket, n: number, ms = 5_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const timer = setTimeout(() => finish(new Error(`read ${got}/${n} bytes in ${ms} ms`)), ms);
      const onData = (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= n) finish();
      };
      const onClose = () => finish(new Error(`closed after ${got}/${n} bytes`));
      function finish(err?: Error) {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        if (err) reject(err);
        else resolve(Buffer.concat(chunks));
      }
      socket.on('data', onData);
      socket.on('close', onClose);
    });
  }
  /** A ping and a pong across the splice, checked byte for byte, then a clean close from A. */
  async function exchange(plan: Plan, a: Socket): Promise<void> {
    const b = plan.bSocket!;
    const ping = randomBytes(64 + (plan.index % 512));
    const pong = randomBytes(64 + ((plan.index * 7) % 512));
    const atB = readExactly(b, ping.length);
    a.write(ping);
    if (!(await atB).equals(ping)) throw new Error('B got different bytes');
    const atA = readExactly(a, pong.length);
    b.write(pong);
    if (!(await atA).equals(pong)) throw new Error('A got different bytes');
    a.end();
    if (!(await closedByProxy(a))) throw new Error('A not closed after the splice ended');
    if (!(await closedByProxy(b))) throw new Error('B not closed after the splice ended');
  }
  async function dialWith(token: Buffer): Promise<Socket> {
    const s = await dial();
    s.write(token);
    return s;
  }
  /** A dialer the proxy must refuse: it must hang up on it. */
  async function refused(bytes: Buffer, then: 'stall' | 'end' = 'stall'): Promise<void> {
    const s = await dial();
    s.write(bytes);
    if (then === 'end') s.end();
    if (!(await closedByProxy(s))) throw new Error(`refused dialer (${bytes.length} bytes, ${then}) still open`);
  }

  const tokens = new TokenStore();
  const registry = new SessionRegistry({
    ...options.hooks,
    log,
    operator: PROXY,
    certificateOf,
    tokens,
    timeouts: { bDialMs, aDialMs },
    onSpliced: (session) => {
      const plan = plans.get(session.b);
      if (!plan) return;
      plan.splicedAt = performance.now();
      plan.spliced.resolve();
    },
  });
  const messengers = {
    notifyB: async (session: SessionInfo, pass: LegPass): Promise<NotifyResult> => {
      const token = preambleOf(session, 'b', pass);
      const plan = plans.get(session.b)!;
      switch (plan.fault) {
        case 'bRefuses':
          return { accepted: false, reason: 'busy' };
        case 'bNotPermitted':
          return { accepted: false, reason: 'not in the directory', notPermitted: true };
        case 'busFails':
          throw new Error('no answer on the bus');
        case 'bNeverDials':
          return { accepted: true };
        case 'stolenToken': {
          // The token alone, with no proof, sent before B's: refused, and the session still takes B.
          // Not awaited: the refusal is checked with the rest of the brokering's work, so a slow
          // machine does not spend B's dial deadline on it.
          const thief = await dial();
          thief.write(encodePreamble(pass.token));
          plan.work.push(closedByProxy(thief).then((ok) => ok || Promise.reject(new Error('thief still open'))));
          plan.bSocket = await dialWith(token);
          return { accepted: true };
        }
        default:
          plan.bSocket = await dialWith(token);
          return { accepted: true };
      }
    },
    confirmToA: async (session: SessionInfo, pass: LegPass): Promise<void> => {
      const token = preambleOf(session, 'a', pass);
      const plan = plans.get(session.b)!;
      const b = plan.bSocket!;
      switch (plan.fault) {
        case 'confirmFails':
          plan.work.push(closedByProxy(b).then((ok) => ok || Promise.reject(new Error('B not closed'))));
          throw new Error('A is no longer waiting for its confirmation');
        case 'aNeverDials':
          plan.work.push(closedByProxy(b).then((ok) => ok || Promise.reject(new Error('B not closed'))));
          return;
        case 'bClosesBeforeSplice':
          b.destroy();
          return;
        case 'stuckUntilShutdown':
          // bConnected has no timer of its own: only shutdown ends a session whose A never gets
          // its confirmation, and it must still close B's socket.
          plan.held.resolve();
          return new Promise<void>(() => {});
        case 'aDialsEarly':
          // Before the confirmation is out: the valid token at the wrong moment.
          await refused(token);
          break;
        default:
          break;
      }
      // A dials once the confirmation has reached it, as after a bus reply.
      plan.work.push(
        (async () => {
          await sleep(0);
          switch (plan.fault) {
            case 'aClosesMidPreamble':
              await refused(token.subarray(0, 40), 'end');
              if (!(await closedByProxy(b))) throw new Error('B not closed');
              return;
            case 'garbagePreamble':
              await refused(randomBytes(10));
              if (!(await closedByProxy(b))) throw new Error('B not closed');
              return;
            case 'wrongToken':
              await refused(encodePreamble(randomBytes(TOKEN_BYTES)));
              break;
            case 'oversizedProof': {
              const header = encodePreamble(pass.token);
              header.writeUInt16BE(0xffff, TOKEN_BYTES);
              const liar = await dial();
              liar.write(header);
              plan.work.push(closedByProxy(liar).then((ok) => ok || Promise.reject(new Error('oversized preamble still open'))));
              break;
            }
            default:
              break;
          }
          const a = await dialWith(token);
          plan.aSocket = a;
          // A refused A (say, its preamble missed the deadline) must fail this brokering, not hang it.
          const aGone = new Promise<never>((_, reject) => a.once('close', () => reject(new Error('A was hung up on before the splice'))));
          aGone.catch(() => {});
          await Promise.race([plan.spliced.promise, aGone]);
          if (plan.fault === 'closeAfterSplice') {
            a.destroy();
            if (!(await closedByProxy(b))) throw new Error('B not closed after A vanished');
            return;
          }
          if (plan.fault === 'tokenReused') await refused(token);
          await exchange(plan, a);
        })(),
      );
    },
  };

  const endpoint = new SpliceEndpoint({
    host: '127.0.0.1',
    port: 0,
    log,
    preambleTimeoutMs: preambleMs,
    // Every dialer here is on 127.0.0.1, up to two per brokering in flight: the pending caps,
    // which exist for floods, have their own test (test/hostile/splice-floods.test.ts).
    maxPending: concurrency * 4,
    maxPendingPerAddress: concurrency * 4,
    route: (preamble, socket, rest) => registry.route(preamble, socket, rest),
  });
  endpoint.on('rejected', (reason) => (rejections[reason] += 1));
  port = (await endpoint.listen()).port;

  const stuck: Promise<unknown>[] = [];
  const splicedAfter: number[] = [];
  let next = 0;
  let finished = 0;
  async function one(index: number): Promise<void> {
    const fault = FAULT_NAMES[Math.floor(random() * FAULT_NAMES.length)]!;
    faults[fault] += 1;
    const expected = FAULTS[fault];
    if (expected.rejection) expectedRejections[expected.rejection] += 1;
    const plan: Plan = { index, fault, openedAt: performance.now(), spliced: deferred(), held: deferred(), work: [] };
    const patience = Math.max(bDialMs, aDialMs) * 4 + 10_000;
    const b = `b-${index}`;
    plans.set(b, plan);
    const { done } = registry.open({ a: `a-${index}`, b, endpoint: `127.0.0.1:${port}` }, { messengers });
    const settle = done.then((output) => {
      outcomes[output.outcome] += 1;
      if (output.outcome !== expected.outcome) mismatch(`#${index} ${fault}: ended ${output.outcome} (${output.detail ?? ''}), expected ${expected.outcome}`);
    });
    if (fault === 'stuckUntilShutdown') {
      // Holds its session until the final shutdown, but not a concurrency slot.
      stuck.push(settle.finally(() => plans.delete(b)));
      await within(plan.held.promise, patience, undefined);
      return;
    }
    const verdict = await within(settle.then(() => 'done' as const), patience, 'hung' as const);
    if (verdict === 'hung') mismatch(`#${index} ${fault}: session never finished`);
    // `work` may grow while the session runs; wait for whatever was queued.
    for (let i = 0; i < plan.work.length; i++) {
      const r = await within(plan.work[i]!.then(() => 'ok', (e: unknown) => String(e)), patience, 'hung');
      if (r !== 'ok') mismatch(`#${index} ${fault}: ${r}`);
    }
    if (fault === 'none' && plan.splicedAt !== undefined) splicedAfter.push(plan.splicedAt - plan.openedAt);
    // A driver that gave up leaves an idle splice behind (no idle timeout here): hang up on it.
    plan.aSocket?.destroy();
    plan.bSocket?.destroy();
    plans.delete(b);
  }
  await Promise.all(
    Array.from({ length: Math.min(concurrency, options.count) }, async () => {
      while (next < options.count) {
        const index = next++;
        await one(index);
        finished += 1;
        if (options.progress && finished % options.progress.every === 0) options.progress.report(finished);
      }
    }),
  );

  await registry.shutdown();
  await Promise.all(stuck);

  // Sockets and timers close a tick or more after their session ends.
  const settleUntil = Date.now() + 3_000;
  while (Date.now() < settleUntil && (clients.size > 0 || endpoint.unroutedCount() > 0 || handleCount('TCPSocketWrap') > tcpBefore)) await sleep(20);
  const leaksBeforeClose = {
    liveSessions: registry.liveCount(),
    unroutedSockets: endpoint.unroutedCount(),
    liveTokens: tokens.liveCount(),
    clientSockets: clients.size,
    tcpHandles: Math.max(0, handleCount('TCPSocketWrap') - tcpBefore),
  };
  for (const c of clients) c.destroy();
  // close() waits for every accepted connection: if it hangs, the proxy kept one.
  const endpointCloseHung = !(await within(endpoint.close().then(() => true), 3_000, false));
  await sleep(50);
  const leaks: SoakLeaks = { ...leaksBeforeClose, timers: Math.max(0, handleCount('Timeout') - timersBefore), endpointCloseHung };

  if (global.gc) global.gc();
  const summary: SoakSummary = {
    brokerings: options.count,
    concurrency,
    seed,
    timeouts: { bDialMs, aDialMs, preambleMs },
    durationMs: Date.now() - started,
    faults,
    outcomes,
    rejections,
    expectedRejections,
    mismatches,
    examples,
    leaks,
    leaked: Object.values(leaks).some((v) => v === true || (typeof v === 'number' && v > 0)),
    rssBeforeMiB: mib(rssBefore),
    rssAfterMiB: mib(process.memoryUsage().rss),
    heapBeforeMiB: mib(heapBefore),
    heapAfterMiB: mib(process.memoryUsage().heapUsed),
    splicedAfterMs: (() => {
      const sorted = splicedAfter.sort((x, y) => x - y);
      return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), count: sorted.length };
    })(),
  };
  return summary;
}

/** Rejections that differ from what the faults imply, as `reason: got/expected`. */
export function rejectionDiff(s: SoakSummary): string[] {
  return REJECT_REASONS.filter((r) => s.rejections[r] !== s.expectedRejections[r]).map((r) => `${r}: ${s.rejections[r]}/${s.expectedRejections[r]}`);
}

function parseArgs(argv: string[]): SoakOptions {
  const flag = (name: string): number | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const n = Number(argv[i + 1]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer, got ${argv[i + 1]}`);
    return n;
  };
  const count = flag('count') ?? (process.env.SOAK_COUNT ? Number(process.env.SOAK_COUNT) : 10_000);
  if (!Number.isInteger(count) || count <= 0) throw new Error(`SOAK_COUNT must be a positive integer, got ${process.env.SOAK_COUNT}`);
  const dialMs = flag('dial-ms');
  const preambleMs = flag('preamble-ms');
  return {
    count,
    concurrency: flag('concurrency') ?? 200,
    seed: flag('seed') ?? Date.now() % 2 ** 31,
    timeouts: { ...(dialMs ? { bDialMs: dialMs, aDialMs: dialMs } : {}), ...(preambleMs ? { preambleMs } : {}) },
  };
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const every = Math.max(1, Math.floor(options.count / 10));
  console.log(`soak: ${options.count} brokerings, ${options.concurrency} at once, seed ${options.seed}`);
  const s = await runSoak({ ...options, progress: { every, report: (n) => console.log(`  ${n} done`) } });
  const line = (label: string, value: unknown) => console.log(`${label.padEnd(22)} ${value}`);
  const table = (rec: Record<string, number>) =>
    Object.entries(rec)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
  console.log('');
  line('brokerings', `${s.brokerings} (${s.concurrency} at once, seed ${s.seed})`);
  line('timeouts', `B dial ${s.timeouts.bDialMs} ms, A dial ${s.timeouts.aDialMs} ms, preamble ${s.timeouts.preambleMs} ms`);
  line('duration', `${(s.durationMs / 1000).toFixed(1)} s (${Math.round(s.brokerings / (s.durationMs / 1000))}/s)`);
  line('faults injected', table(s.faults));
  line('outcomes', table(s.outcomes));
  line('rejections', table(s.rejections));
  const diff = rejectionDiff(s);
  line('rejections expected', diff.length === 0 ? 'all match' : `differ: ${diff.join(' ')}`);
  line('unexpected outcomes', s.mismatches);
  line('open to spliced', `p50 ${s.splicedAfterMs.p50} ms, p99 ${s.splicedAfterMs.p99} ms (${s.splicedAfterMs.count} fault-free brokerings)`);
  for (const e of s.examples) console.log(`  ${e}`);
  line('leaked sessions', `live=${s.leaks.liveSessions} unrouted=${s.leaks.unroutedSockets} tokens=${s.leaks.liveTokens}`);
  line('open sockets', `client=${s.leaks.clientSockets} tcp-handles=${s.leaks.tcpHandles} endpoint-close-hung=${s.leaks.endpointCloseHung}`);
  line('timers left', s.leaks.timers);
  line('RSS', `${s.rssBeforeMiB} MiB before, ${s.rssAfterMiB} MiB after`);
  line('heap used', `${s.heapBeforeMiB} MiB before, ${s.heapAfterMiB} MiB after${global.gc ? ' (after GC)' : ' (run with --expose-gc for a GC first)'}`);
  const failed = s.leaked || s.mismatches > 0 || diff.length > 0;
  console.log(failed ? '\nSOAK FAILED' : '\nsoak ok: nothing leaked');
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
