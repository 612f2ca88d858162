import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../core/package-root.js';
import { callJsonRpc } from '../jsonrpc/client.js';
import { classifyCall, classifyDuel, retriedCalls, type FailureClass, type RetriedCall } from './chaos-errors.js';
import { duelPeers, type DuelSide } from './duel.js';

// The load the chaos run keeps up while it kills processes, each kind in a loop of its own, every
// call with a deadline and its outcome recorded:
//   brokered  a new brokered channel to hd-2 and one call over it, one at a time (chaos-broker.ts)
//   kept      a gateway call to hd-2 every KEPT_EVERY_MS (a few in flight): the channel stays
//             open and is reused
//   duel      a game duel with the real peer CLIs every DUEL_EVERY_MS (a few in flight), host on
//             one games instance and guest on the other, alternating
// and long-lived game hosts (keepers), one per games instance, whose records must survive it all.

export const WORK_KINDS = ['brokered', 'kept', 'duel'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

export interface WorkRecord {
  kind: WorkKind;
  /** performance.now() of the run's process. */
  startedAt: number;
  endedAt: number;
  ok: boolean;
  failure?: FailureClass;
  /** The raw message of a failure, for the run's JSON. */
  detail?: string;
  /** Calls inside it that failed and were retried (a duel's peers retry the rendezvous), each when it was said. */
  retried?: RetriedCall[];
}

export interface LoadOptions {
  jsonrpcPort: number;
  certs: string;
  /** One new brokering and a call over it. */
  broker: () => Promise<void>;
  /** Called on the kept channel. */
  keepTo: string;
  /** A gateway call or a brokering not over by then is a hang. */
  callDeadlineMs: number;
  /** Both peers of a duel are killed past this: a hang. */
  duelDeadlineMs: number;
  games: DuelSide[];
  /** Names the duels and keepers apart from another run's on the same bucket. */
  runId: string;
}

/** A brokering this often, a few in flight. */
const BROKER_EVERY_MS = 250;
const BROKERINGS_IN_FLIGHT = 3;
/** A call on the kept channel this often: well inside the channel idle time, so it stays open. */
const KEPT_EVERY_MS = 150;
const KEPT_IN_FLIGHT = 4;
/** A duel starts this often (its two peer processes are most of the load on a small machine). */
const DUEL_EVERY_MS = 1500;
const DUELS_IN_FLIGHT = 3;

export class ChaosLoad {
  readonly records: WorkRecord[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly tls: { ca: Buffer; cert: Buffer; key: Buffer };

  constructor(private readonly opts: LoadOptions) {
    this.tls = { ca: readFileSync(join(opts.certs, 'root.crt')), cert: readFileSync(join(opts.certs, 'hd-1.crt')), key: readFileSync(join(opts.certs, 'hd-1.key')) };
  }

  start(): void {
    this.running = true;
    // Calls in flight on the kept channel share it (one HTTP connection each to the gateway).
    const keptAgent = new Agent({ keepAlive: true, maxSockets: KEPT_IN_FLIGHT });
    this.loops = [
      this.paced('brokered', () => withDeadline(this.opts.broker(), this.opts.callDeadlineMs), { everyMs: BROKER_EVERY_MS, inFlight: BROKERINGS_IN_FLIGHT}),
      this.paced('kept', () => this.call(this.opts.keepTo, keptAgent), { everyMs: KEPT_EVERY_MS, inFlight: KEPT_IN_FLIGHT}).finally(() => keptAgent.destroy()),
      this.paced('duel', (i) => this.duel(i), { everyMs: DUEL_EVERY_MS, inFlight: DUELS_IN_FLIGHT}),
    ];
  }

  /** Lets each loop finish the calls it has in flight, and starts none after. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** One gateway call: `<operator>._ping` from hd-1's gateway with hd-1's certificate. */
  async call(operator: string, agent?: Agent): Promise<unknown> {
    const url = `https://127.0.0.1:${this.opts.jsonrpcPort}/jsonrpc`;
    return callJsonRpc({ url, serverName: 'hd-1', tls: this.tls, timeoutMs: this.opts.callDeadlineMs, ...(agent ? { agent } : {}) }, `${operator}._ping`, {});
  }

  /**
   * Starts a call of `kind` every `everyMs` while fewer than `inFlight` run: new work keeps starting on time while older calls ride out a fault,
   * so a recovery is measured on calls that began after the kill, not on one stuck since before.
   */
  private async paced(kind: WorkKind, work: (index: number) => Promise<unknown>, pace: { everyMs: number; inFlight: number }): Promise<void> {
    const running = new Set<Promise<void>>();
    for (let i = 0; this.running; i++) {
      while (this.running && (running.size >= pace.inFlight)) await sleep(Math.min(pace.everyMs, 50));
      if (!this.running) break;
      const startedAt = performance.now();
      const one: Promise<void> = work(i).then(
        (retried) => void this.records.push({ kind, startedAt, endedAt: performance.now(), ok: true, ...(Array.isArray(retried) && retried.length ? { retried } : {}) }),
        (err: unknown) => {
          const failure = err instanceof DuelFailed ? err.failure : classifyCall(err);
          const retried = err instanceof DuelFailed && err.retried.length ? { retried: err.retried } : {};
          this.records.push({ kind, startedAt, endedAt: performance.now(), ok: false, failure, detail: (err as Error).message, ...retried });
        },
      );
      running.add(one);
      void one.finally(() => running.delete(one));
      await sleep(pace.everyMs);
    }
    await Promise.all(running);
  }

  /** Duel `i`: the host on one instance and the guest on the other, in turn; the calls its peers retried. */
  private async duel(i: number): Promise<RetriedCall[]> {
    const [a, b] = this.opts.games;
    const [host, guest] = i % 2 === 0 ? [a!, b!] : [b!, a!];
    // A peer explains and exits by its own --timeout well before the duel's deadline kills it.
    const timeout = ['--timeout', String(Math.max(1000, this.opts.duelDeadlineMs - 10_000))];
    const peers = await duelPeers(`chaos ${this.opts.runId} duel ${i}`, host, guest, timeout, { deadlineMs: this.opts.duelDeadlineMs });
    const failure = classifyDuel(peers);
    if (failure) throw new DuelFailed(failure, retriedCalls(peers), peers.map((p) => `${p.verb} exit ${p.code}: ${p.stderr.trim().split('\n').slice(-3).join(' | ')}`).join(' || '));
    return retriedCalls(peers);
  }
}

/** `work`, or a rejection saying it hung past `ms`. */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([work, hung]).finally(() => clearTimeout(timer));
}

/** A duel that failed, with the class its peers' output puts it in. */
class DuelFailed extends Error {
  constructor(
    readonly failure: FailureClass,
    readonly retried: RetriedCall[],
    detail: string,
  ) {
    super(detail);
  }
}

/** A game host that stays (no --max-guests), polling its rendezvous until stopped: its record must never go. */
export class GameKeeper {
  private stderr = '';
  private constructor(
    readonly name: string,
    readonly side: DuelSide,
    private readonly child: ChildProcess,
  ) {
    child.stderr!.on('data', (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
  }

  static start(name: string, side: DuelSide): GameKeeper {
    const args = ['host', '--server', side.server, '--name', name, '--stun', side.stun];
    const child = spawn(process.execPath, [join(packageRoot, 'dist/src/cli/games.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new GameKeeper(name, side, child);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What it said last, to explain an exit. */
  get said(): string {
    return this.stderr.trim().split('\n').slice(-3).join(' | ');
  }

  /** SIGTERM: it deletes its game on the way out, as on Ctrl-C. */
  async stop(): Promise<void> {
    if (!this.running) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      this.child.once('exit', () => (clearTimeout(force), resolve()));
      this.child.kill('SIGTERM');
    });
  }
}
