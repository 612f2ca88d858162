import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '../core/nats.js';
import { packageRoot } from '../core/package-root.js';
import { DEFAULT_SD_STREAM } from '../directory/stream-names.js';
import { DEFAULT_CLUSTER_CLIENT_PORT } from '../natsconf/cluster.js';
import { DEFAULT_BUS_ADMIN, DEFAULT_GAMES_ADMIN } from '../natsconf/generate.js';
import { readRoleFolders } from '../settings/load.js';
import { checkGameRecords, eventually, liveSessions, lostSubjects, replicasCurrent, streamSubjects, type GameRecordCheck } from './chaos-checks.js';
import { Brokerer } from './chaos-broker.js';
import { ChaosLoad, GameKeeper, type WorkKind, type WorkRecord } from './chaos-load.js';
import { baseline, outcomes, recoveryByTarget, type Kill, type KillOutcome, type KillTarget } from './chaos-report.js';
import type { DuelSide } from './duel.js';
import { distinctFreePorts } from './free-port.js';
import { NatsNodes } from './nats-nodes.js';
import { DevStack, type RoleName, type StackPorts } from './stack.js';

// Chaos under load (issue 12): the cluster profile as `make demo-cluster` starts it (3 nats-servers,
// sd, two proxies of one operator, the EPS servers, two games instances), load kept up by
// src/devstack/chaos-load.ts, and one process at a time killed with SIGKILL and started again: a
// nats-server node, a proxy, a games instance, sd, in turn. Then the checks of chaos-checks.ts.

export interface ChaosOptions {
  /** SIGKILLs, one every `intervalMs`, cycling through `targets`. */
  kills: number;
  intervalMs: number;
  /** From the SIGKILL to starting its replacement. */
  downMs: number;
  targets?: readonly KillTarget[];
  /** Load before the first kill: the baseline. */
  warmupMs?: number;
  logDir?: string;
  /** A line per event, as it happens. */
  progress?: (line: string) => void;
}

export interface ChaosResult {
  options: Required<Omit<ChaosOptions, 'progress' | 'logDir'>>;
  logDir: string;
  durationMs: number;
  work: Record<WorkKind, { ok: number; failed: number }>;
  baseline: ReturnType<typeof baseline>;
  kills: KillOutcome[];
  byTarget: ReturnType<typeof recoveryByTarget>;
  unclearFailures: number;
  invariants: {
    gameRecords: GameRecordCheck[];
    directory: { messagesBefore: number; messagesAfter: number; lostSubjects: string[] };
    /** Each proxy's live sessions once the load stopped and hd-1's channels idled out. */
    openSessions: Record<string, number>;
    /** Roles or nodes not running at the end. */
    notRunning: string[];
    /** Replicated streams whose replicas are not all current 20 s after the load stopped. */
    replicasBehind: string[];
    /** A brokered and a kept call after everything: both must answer. */
    finalCalls: { brokered: boolean; kept: boolean };
  };
  /** Times hd-1's kept channel was lost (its proxy killed) and brokered again on the next call (hd-1's log). */
  keptChannelLost: number;
  records: WorkRecord[];
}

/**
 * Each process's own node, as settings/cluster/roles has it: the first of its `nats.url` list,
 * numbered from the profile's first client port (the proxies on nodes 1 and 2, hd-1 on node 3).
 */
function homeNode(role: RoleName): number {
  const { tree } = readRoleFolders([join(packageRoot, 'settings/cluster/roles', role)]);
  const first = ((tree['nats'] as { url?: string[] } | undefined)?.url ?? [])[0];
  const port = first ? Number(new URL(first).port) : DEFAULT_CLUSTER_CLIENT_PORT;
  return port - DEFAULT_CLUSTER_CLIENT_PORT;
}
const ROLES: RoleName[] = ['sd-1', 'public-proxy-1', 'public-proxy-2', 'hd-1', 'hd-2', 'public-proxy-eps-1', 'games-1', 'games-2'];
/** hd-1 closes a channel idle this long: the kept load never lets it, and after the load it must go. */
const CHANNEL_IDLE_MS = 1000;
const CALL_DEADLINE_MS = 15_000;
const DUEL_DEADLINE_MS = 30_000;
const GAMES_BUCKET = 'EPS_GAMES';
/** Every duel and keeper registers from 127.0.0.1: the per-address limits are for abusers, not this load. */
const GAMES_OVERRIDES = 'http: { rateLimit: { max: 1000000 } }\ngames: { registerLimit: { max: 1000000 } }\n';

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const targets = opts.targets ?? (['nats', 'proxy', 'games', 'sd'] as const);
  const warmupMs = opts.warmupMs ?? 8000;
  const say = opts.progress ?? (() => undefined);
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'eps-chaos-'));
  const t0 = performance.now();
  const at = () => `${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s`;

  // Every port distinct: two freePort() calls may hand out the same one.
  const p = await distinctFreePorts(10);
  const ports: StackPorts = { sd: p[0]!, jsonrpc: p[1]!, splice: p[2]!, metrics: p[3]!, games: p[4]!, stun: p[5]!, second: { splice: p[6]!, metrics: p[7]!, games: p[8]!, stun: p[9]! } };
  const bus = await NatsNodes.start({ logDir, taken: p });
  const stack = new DevStack({
    natsUrl: bus.urls(0),
    natsUrlOf: (role) => bus.urls(homeNode(role)),
    profile: join(packageRoot, 'settings/cluster'),
    ports,
    logDir,
    overrides: { 'hd-1': `timeouts: { channelIdleMs: ${CHANNEL_IDLE_MS} }\n`, 'games-1': GAMES_OVERRIDES, 'games-2': GAMES_OVERRIDES },
  });
  const games: DuelSide[] = [
    { server: `http://127.0.0.1:${ports.games}`, stun: `127.0.0.1:${ports.stun}` },
    { server: `http://127.0.0.1:${ports.second!.games}`, stun: `127.0.0.1:${ports.second!.stun}` },
  ];
  const load = new ChaosLoad({
    jsonrpcPort: ports.jsonrpc,
    certs: join(packageRoot, 'settings/dev/certs'),
    broker: () => brokerer!.brokerOnce(),
    keepTo: 'hd-2',
    callDeadlineMs: CALL_DEADLINE_MS,
    duelDeadlineMs: DUEL_DEADLINE_MS,
    games,
    runId: String(process.pid),
  });
  const keepers: GameKeeper[] = [];
  let brokerer: Brokerer | undefined;
  const admins: NatsConnection[] = [];
  const countIn = (role: RoleName, text: string) => {
    try {
      return readFileSync(join(logDir, `${role}.log`), 'utf8').split(text).length - 1;
    } catch {
      return 0;
    }
  };
  /** Where each role serves, to tell when a replacement is up. */
  const portOf: Partial<Record<RoleName, number>> = { 'sd-1': ports.sd, 'public-proxy-1': ports.splice, 'public-proxy-2': ports.second!.splice, 'games-1': ports.games, 'games-2': ports.second!.games, 'hd-1': ports.jsonrpc };
  const proxyMetrics: Record<string, number> = { 'public-proxy-1': ports.metrics, 'public-proxy-2': ports.second!.metrics };

  try {
    const admin = { ops: await bus.connectAs(DEFAULT_BUS_ADMIN), games: await bus.connectAs(DEFAULT_GAMES_ADMIN) };
    admins.push(admin.ops, admin.games);
    await stack.startAll(ROLES.filter((r) => !r.startsWith('games')));
    await stack.sdSetup();
    // One games instance after the other: both creating the R3 buckets
    // at once on a busy machine can take longer than the bus's 5 s API timeout, and `games run`
    // then exits at start-up ("cannot start: timeout"), as seen once in four runs here.
    for (const role of ['games-1', 'games-2'] as const) {
      stack.start(role);
      await stack.waitUntilListening(role, portOf[role]!, 30_000);
    }
    await Promise.all(Object.entries(portOf).map(([role, port]) => stack.waitUntilListening(role as RoleName, port!, 30_000)));
    // The servers learn the directory over the bus a moment after sd-setup.
    brokerer = await Brokerer.start({ natsUrl: bus.urls(homeNode('hd-1')), sdUrl: stack.sdUrl, certs: join(packageRoot, 'settings/dev/certs'), requestTimeoutMs: 10_000 });
    const ready = await eventually(async () => (await load.call('hd-2'), await brokerer!.brokerOnce(), true), 45_000, 300);
    if (!ready) throw new Error(`the cluster stack did not broker within 45 s; logs in ${logDir}`);
    const directoryBefore = await streamSubjects(admin.ops, DEFAULT_SD_STREAM);
    say(`${at()}  stack up (3 nats-servers, sd, 2 proxies, hd-1, hd-2, public-proxy-eps-1, 2 games); directory stream: ${directoryBefore.messages} records; logs in ${logDir}`);

    keepers.push(GameKeeper.start(`chaos ${process.pid} keeper 1`, games[0]!), GameKeeper.start(`chaos ${process.pid} keeper 2`, games[1]!));
    load.start();
    await sleep(warmupMs);

    const kills: Kill[] = [];
    const counters: Record<KillTarget, number> = { nats: 0, proxy: 0, games: 0, sd: 0 };
    for (let i = 0; i < opts.kills; i++) {
      const target = targets[i % targets.length]!;
      const n = counters[target]++;
      const killedAt = performance.now();
      let victim: string;
      let restart: () => Promise<void>;
      if (target === 'nats') {
        const node = n % bus.nodes.length;
        victim = bus.nodes[node]!.name;
        await bus.killNode(node);
        restart = () => bus.startNode(node);
      } else {
        const role: RoleName = target === 'sd' ? 'sd-1' : target === 'proxy' ? (n % 2 ? 'public-proxy-2' : 'public-proxy-1') : n % 2 ? 'games-2' : 'games-1';
        victim = role;
        const servingBefore = countIn(role, 'public proxy brokering');
        await stack.stopRole(role, 'SIGKILL');
        restart = async () => {
          stack.start(role);
          await stack.waitUntilListening(role, portOf[role]!, 30_000);
          // A proxy listens before it has the directory and its queue subscription: it serves once it says so.
          if (target === 'proxy' && !(await eventually(async () => countIn(role, 'public proxy brokering') > servingBefore, 30_000, 100))) throw new Error(`${role} did not serve again within 30 s`);
        };
      }
      say(`${at()}  SIGKILL ${victim}`);
      await sleep(opts.downMs);
      const restartedAt = performance.now();
      await restart();
      const healthyAt = performance.now();
      kills.push({ target, victim, killedAt, restartedAt, healthyAt });
      say(`${at()}  ${victim} started again, serving ${Math.round(healthyAt - killedAt)} ms after the kill`);
      await sleep(Math.max(0, killedAt + opts.intervalMs - performance.now()));
    }

    await load.stop();
    const loadEndedAt = performance.now();
    say(`${at()}  load stopped; checking`);

    const gameRecords = await checkGameRecords(admin.games, GAMES_BUCKET, keepers, games.map((g) => g.server));
    for (const k of keepers) await k.stop();
    const directoryAfter = await streamSubjects(admin.ops, DEFAULT_SD_STREAM);
    // hd-1 closes its channels CHANNEL_IDLE_MS after their last call; then no proxy may hold a session.
    const openSessions: Record<string, number> = {};
    for (const [role, port] of Object.entries(proxyMetrics)) {
      await eventually(async () => (await liveSessions(port)) === 0, 10_000);
      openSessions[role] = await liveSessions(port);
    }
    const replicasBehind: string[] = [];
    if (!(await eventually(() => replicasCurrent(admin.ops, DEFAULT_SD_STREAM), 20_000, 500))) replicasBehind.push(DEFAULT_SD_STREAM);
    if (!(await eventually(() => replicasCurrent(admin.games, `KV_${GAMES_BUCKET}`), 20_000, 500))) replicasBehind.push(`KV_${GAMES_BUCKET}`);
    const notRunning = [
      ...ROLES.filter((r) => {
        const c = stack.child(r);
        return !c || c.exitCode !== null || c.signalCode !== null;
      }),
      ...bus.nodes.filter((_, i) => !bus.isRunning(i)).map((n) => n.name),
    ];
    const finalCalls = {
      brokered: await brokerer.brokerOnce().then(() => true, () => false),
      kept: await load.call('hd-2').then(() => true, () => false),
    };

    const killOutcomes = outcomes(kills, load.records, loadEndedAt);
    const work = Object.fromEntries(
      (['brokered', 'kept', 'duel'] as const).map((k) => [k, { ok: load.records.filter((r) => r.kind === k && r.ok).length, failed: load.records.filter((r) => r.kind === k && !r.ok).length }]),
    ) as ChaosResult['work'];
    return {
      options: { kills: opts.kills, intervalMs: opts.intervalMs, downMs: opts.downMs, targets, warmupMs },
      logDir,
      durationMs: Math.round(performance.now() - t0),
      work,
      baseline: baseline(load.records, kills[0]?.killedAt ?? loadEndedAt),
      kills: killOutcomes,
      byTarget: recoveryByTarget(killOutcomes),
      unclearFailures: load.records.filter((r) => !r.ok && r.failure && !r.failure.clear).length + load.records.flatMap((r) => r.retried ?? []).filter((f) => !f.clear).length,
      invariants: {
        gameRecords,
        directory: { messagesBefore: directoryBefore.messages, messagesAfter: directoryAfter.messages, lostSubjects: lostSubjects(directoryBefore.subjects, directoryAfter.subjects) },
        openSessions,
        notRunning,
        replicasBehind,
        finalCalls,
      },
      keptChannelLost: countIn('hd-1', '"detail":"lost"},"msg":"peer channel ended"'),
      records: load.records.map((r) => ({
        ...r,
        startedAt: Math.round(r.startedAt - t0),
        endedAt: Math.round(r.endedAt - t0),
        ...(r.retried ? { retried: r.retried.map((f) => ({ ...f, at: Math.round(f.at - t0) })) } : {}),
      })),
    };
  } finally {
    await load.stop();
    await brokerer?.close();
    await Promise.all(keepers.map((k) => k.stop()));
    for (const nc of admins) await nc.close().catch(() => undefined);
    await stack.stop();
    await bus.stop();
  }
}

/** The invariants that broke, each said in a line; empty when all held. */
export function brokenInvariants(r: ChaosResult): string[] {
  const broken: string[] = [];
  const inv = r.invariants;
  for (const g of inv.gameRecords) {
    if (!g.hostRunning) broken.push(`game host "${g.name}" exited during the run: ${g.hostSaid}`);
    else if (!g.inKv || g.statusByInstance.some((s) => s !== 200)) broken.push(`game "${g.name}" lost: in KV ${g.inKv}, GET by instance ${g.statusByInstance.join(', ')}`);
  }
  if (inv.directory.lostSubjects.length > 0 || inv.directory.messagesAfter < inv.directory.messagesBefore) {
    broken.push(`directory records lost: ${inv.directory.messagesBefore} before, ${inv.directory.messagesAfter} after; subjects ${inv.directory.lostSubjects.join(', ')}`);
  }
  for (const [proxy, n] of Object.entries(inv.openSessions)) if (n !== 0) broken.push(`${proxy} still holds ${n} live sessions after the load stopped`);
  if (inv.notRunning.length > 0) broken.push(`not running at the end: ${inv.notRunning.join(', ')}`);
  if (inv.replicasBehind.length > 0) broken.push(`replicas not current: ${inv.replicasBehind.join(', ')}`);
  if (!inv.finalCalls.brokered || !inv.finalCalls.kept) broken.push(`a call after the run failed: ${JSON.stringify(inv.finalCalls)}`);
  for (const k of r.kills) for (const [kind, ms] of Object.entries(k.recoveryMs)) if (ms === null) broken.push(`no ${kind} succeeded after killing ${k.victim} before the next kill`);
  if (r.unclearFailures > 0) broken.push(`${r.unclearFailures} calls failed without a clear error (the UNCLEAR lines above)`);
  return broken;
}
