import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { RpcError } from '../../src/core/errors.js';
import { encodePreamble } from '../../src/core/splice-wire.js';
import { connectBus, type NatsConnection } from '../../src/core/nats.js';
import { readTlsMaterial } from '../../src/core/tls-material.js';
import { DirectoryClient } from '../../src/directory/client.js';
import { TestNatsServer } from './nats-server.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { DevStack, waitForPort, type RoleName } from '../../src/devstack/stack.js';
import { CERTS, freePorts, metricValue, metrics } from './stack.js';

// Shared by the fault-injection tests: a JSON-RPC caller that never hangs, a steady trickle of
// calls whose every outcome is recorded, bounded waits, and the extra directory records that make
// public-proxy-hyper-1 a second brokered peer (so one pair can stay healthy while the other is
// broken on purpose).

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}

export interface CallOutcome {
  method: string;
  startedAt: number;
  ms: number;
  ok: boolean;
  result?: { serverInfo?: { name?: string; groups?: string[] } };
  code?: number;
  message?: string;
}

const hd1Tls = () => readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });

/** One call to hd-1's gateway, as hd-1's operator; transport failures are outcomes too (code undefined). */
export async function call(stack: DevStack, method: string, timeoutMs = 15_000): Promise<CallOutcome> {
  const startedAt = Date.now();
  try {
    const result = await callJsonRpc(
      { url: `https://127.0.0.1:${stack.opts.ports.jsonrpc}/jsonrpc`, serverName: 'hd-1', tls: hd1Tls(), timeoutMs },
      method,
      {},
    );
    return { method, startedAt, ms: Date.now() - startedAt, ok: true, result: result as CallOutcome['result'] };
  } catch (err) {
    const code = err instanceof RpcError ? err.code : undefined;
    return { method, startedAt, ms: Date.now() - startedAt, ok: false, code, message: (err as Error).message };
  }
}

/** Calls until one succeeds (the servers may still be learning the directory or reconnecting). */
export async function callUntilOk(stack: DevStack, method: string, timeoutMs = 20_000): Promise<CallOutcome> {
  let last: CallOutcome | undefined;
  try {
    await waitFor(`${method} to succeed`, async () => (last = await call(stack, method, 5000)).ok, timeoutMs, 100);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last outcome: ${JSON.stringify(last)}`);
  }
  return last!;
}

/**
 * Back-to-back calls of one method until stopped, each recorded. A sequential loop (not a
 * timer) so a hung call shows up as a long `ms`, never as calls piling up.
 */
export class Trickle {
  readonly outcomes: CallOutcome[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly stack: DevStack,
    readonly method: string,
    private readonly gapMs = 50,
    private readonly timeoutMs = 15_000,
  ) {
    this.loop = (async () => {
      while (this.running) {
        this.outcomes.push(await call(this.stack, this.method, this.timeoutMs));
        await sleep(this.gapMs);
      }
    })();
  }

  since(t: number): CallOutcome[] {
    return this.outcomes.filter((o) => o.startedAt >= t);
  }

  between(from: number, to: number): CallOutcome[] {
    return this.outcomes.filter((o) => o.startedAt >= from && o.startedAt + o.ms <= to);
  }

  /** Resolves once `n` more calls have succeeded after now. */
  async okAfter(n: number, timeoutMs = 10_000): Promise<void> {
    const t = Date.now();
    await waitFor(`${n} successful ${this.method} calls`, () => this.since(t).filter((o) => o.ok).length >= n, timeoutMs);
  }

  async stop(): Promise<CallOutcome[]> {
    this.running = false;
    await this.loop;
    return this.outcomes;
  }
}

export function describeOutcomes(outcomes: CallOutcome[]): string {
  return outcomes.map((o) => (o.ok ? `ok ${o.ms}ms` : `ERR ${o.code} ${o.ms}ms ${o.message}`)).join('\n');
}

export async function proxyMetric(stack: DevStack, name: string, labels = ''): Promise<number> {
  return metricValue(await metrics(stack.opts.ports.metrics), name, labels);
}

/** A free-port stack without the proxy operator's EPS server, which no fault test needs. */
/** A's bus and call timeouts in every fault stack: what A's precise errors are measured against. */
export const A_BUS_MS = 3000;
export const A_CALL_MS = 3000;

/** Short timeouts, so every fault resolves in seconds; a test overrides a role where it differs. */
export const FAULT_TIMEOUTS: Partial<Record<RoleName, string>> = {
  'public-proxy-1': 'timeouts: { bDialMs: 2500, aDialMs: 2500, busRequestMs: 2000, preambleMs: 2000 }\n',
  'hd-1': `timeouts: { busRequestMs: ${A_BUS_MS}, dialMs: 3000, callMs: ${A_CALL_MS} }\n`,
  'hd-2': 'timeouts: { busRequestMs: 3000, dialMs: 3000, callMs: 3000 }\n',
  'public-proxy-hyper-1': 'timeouts: { busRequestMs: 3000, dialMs: 3000, callMs: 3000 }\n',
};

export async function startFaultStack(natsUrl: string, overrides: Partial<Record<RoleName, string>> = {}): Promise<DevStack> {
  const stack = new DevStack({ natsUrl, ports: await freePorts(), overrides: { ...FAULT_TIMEOUTS, ...overrides } });
  await stack.startAll(['sd-1', 'public-proxy-1', 'hd-1', 'hd-2', 'public-proxy-hyper-1']);
  await waitForPort(stack.opts.ports.metrics, 20_000);
  await sdSetup(stack, HYPER_AS_PEER);
  return stack;
}

/**
 * Directory records that make public-proxy-hyper-1 a peer reachable through the same proxy as
 * hd-2: a second B, so a fault can break one pair while the other must keep working.
 */
export const HYPER_AS_PEER = `
- kind: channel
  operator: public-proxy-hyper-1
  channel: { type: grpc_server, proxy: public-proxy-eps-1 }
- { kind: member, group: peers, operator: public-proxy-hyper-1 }
- kind: service
  operator: public-proxy-hyper-1
  name: eps
  permissions:
    - { group: peers, methods: [_ping] }
    - { group: proxies, methods: [connectionForward] }
`;

/** The file's nats-server: its generated permissions include HYPER_AS_PEER, which the stack adds. */
export function startFaultNats(): Promise<TestNatsServer> {
  return TestNatsServer.start({ records: HYPER_AS_PEER });
}

/**
 * Runs the real sd-setup on the dev records plus `extraYaml` (appended as the last file) and
 * returns its output; it appends only what the chain lacks.
 */
export async function sdSetup(stack: DevStack, extraYaml = ''): Promise<string> {
  const devDir = resolve('settings/dev/directory');
  const dir = mkdtempSync(join(tmpdir(), 'eps-records-'));
  for (const name of readdirSync(devDir).filter((n) => n.endsWith('.yml'))) {
    // $DIR means the file's own folder; the copies live elsewhere, so pin it to the original.
    writeFileSync(join(dir, name), readFileSync(join(devDir, name), 'utf8').replaceAll('$DIR', devDir));
  }
  if (extraYaml) writeFileSync(join(dir, '900_extra.yml'), extraYaml);
  const child = spawn(process.execPath, ['dist/src/cli/sd-setup.js', '--records', dir, '--wait', '20'], {
    env: { ...process.env, SD_URL: stack.sdUrl, LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`sd-setup exited with ${code}: ${output}`);
  return output;
}

export async function sdTip(stack: DevStack): Promise<{ seq: number; hash: string }> {
  return callJsonRpc({ url: stack.sdUrl, serverName: 'sd-1', tls: hd1Tls(), timeoutMs: 5000 }, 'getTip', {});
}

/** SIGSTOP / SIGCONT a role's process: alive for the kernel and NATS, silent for everyone. */
export function signalRole(stack: DevStack, role: RoleName, signal: 'SIGSTOP' | 'SIGCONT'): void {
  const child = stack.child(role);
  if (!child?.pid) throw new Error(`${role} is not running`);
  process.kill(child.pid, signal);
}

/** SIGKILL a role and wait for its exit (a crash: no goodbye on any socket). */
export function crash(stack: DevStack, role: RoleName): Promise<void> {
  return stack.stopRole(role, 'SIGKILL');
}

/**
 * The test process as A, speaking the proxy's bus protocol itself with hd-1's key: lets a test
 * hold a confirmation without dialing, to pin a session in `confirmed`.
 */
export class BusClientAsHd1 {
  private constructor(
    readonly nc: NatsConnection,
    readonly directory: DirectoryClient,
    readonly bus: Bus,
  ) {}

  static async connect(natsUrl: string, stack: DevStack): Promise<BusClientAsHd1> {
    const log = pino({ level: 'silent' });
    const tls = hd1Tls();
    const nc = await connectBus({ url: natsUrl, name: 'faults-test-a', tls }, log);
    const directory = new DirectoryClient({ url: stack.sdUrl, serverName: 'sd-1', tls, nc, log });
    directory.start();
    await directory.ready();
    const bus = new Bus({ nc, signer: createSigner('hd-1', tls.key), directory, log, maxAgeMs: 30_000, maxBytes: 65_536, requestTimeoutMs: 5000 });
    return new BusClientAsHd1(nc, directory, bus);
  }

  async close(): Promise<void> {
    this.bus.close();
    await this.directory.close();
    await this.nc.close().catch(() => undefined);
  }
}

/**
 * Dials the splice endpoint, sends the token without a proof, and reports how the proxy ended the
 * connection (a dead token is refused before any proof is looked at).
 */
export function dialWithToken(endpoint: string, token: string, waitMs = 5000): Promise<'closed' | 'open'> {
  const [host, port] = [endpoint.slice(0, endpoint.lastIndexOf(':')), Number(endpoint.slice(endpoint.lastIndexOf(':') + 1))];
  return new Promise((resolvePromise) => {
    const s: Socket = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolvePromise('open');
    }, waitMs);
    s.on('error', () => undefined);
    s.once('connect', () => s.write(encodePreamble(Buffer.from(token, 'base64'))));
    s.once('close', () => {
      clearTimeout(timer);
      resolvePromise('closed');
    });
  });
}
