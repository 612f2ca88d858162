import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get } from 'node:http';
import { promisify } from 'node:util';
import { DevStack, type RoleName, type StackPorts } from '../../src/devstack/stack.js';
import { distinctFreePorts } from './ports.js';

const run = promisify(execFile);
export const CERTS = 'settings/dev/certs';

export async function freePorts(): Promise<StackPorts> {
  // Distinct: each pick is only free until bound, and two roles given one port fail to start.
  const [sd, jsonrpc, splice, metrics, games, stun] = (await distinctFreePorts(6)) as [number, number, number, number, number, number];
  return { sd, jsonrpc, splice, metrics, games, stun };
}

export async function startStack(natsUrl: string, opts: { overrides?: Partial<Record<RoleName, string>>; order?: RoleName[] } = {}): Promise<DevStack> {
  const stack = new DevStack({ natsUrl, ports: await freePorts(), ...(opts.overrides ? { overrides: opts.overrides } : {}) });
  await stack.startAll(opts.order);
  await stack.sdSetup();
  return stack;
}

/** The seed's curl, verbatim but for the port, with hd-1's client certificate unless told otherwise. */
export async function curlJsonRpc(port: number, body: string, opts: { withCert?: boolean; maxTimeS?: number } = {}) {
  const args = [
    '-sS',
    ...(opts.withCert === false ? [] : ['--cert', `${CERTS}/hd-1.crt`, '--key', `${CERTS}/hd-1.key`]),
    '--cacert', `${CERTS}/root.crt`,
    '--resolve', `hd-1:${port}:127.0.0.1`,
    `https://hd-1:${port}/jsonrpc`,
    '--header', 'Content-Type: application/json',
    '--max-time', String(opts.maxTimeS ?? 30),
    '--write-out', '\n%{http_code}',
    // Large bodies go through a file: an argument list has a size limit of its own.
    '--data-binary', body.length > 64 * 1024 ? `@${bodyFile(body)}` : body,
  ];
  const { stdout } = await run('curl', args);
  const nl = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) ? JSON.parse(stdout.slice(0, nl)) : undefined };
}

export const PING = '{"method": "hd-2._ping", "id": "1", "params": {}, "jsonrpc": "2.0"}';

/** Pings until the servers have learned the directory (they get it over the bus after sd-setup). */
export async function pingUntilAnswered(port: number, timeoutMs = 20_000, operator = 'hd-2') {
  const deadline = Date.now() + timeoutMs;
  const ping = operator === 'hd-2' ? PING : PING.replace('hd-2._ping', `${operator}._ping`);
  for (;;) {
    const r = await curlJsonRpc(port, ping);
    if (r.body?.result || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 300));
  }
}

export function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * Waits until every session the proxy (metrics on `port`) spliced has ended: hd-1 closed its idle
 * channel, so its next call brokers a fresh one. A fixed pause of a few idle timeouts raced a
 * loaded hd-1, whose idle timer fired late: the next call reused the channel.
 */
export async function untilSplicesEnded(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await metrics(port);
    const spliced = metricValue(text, 'eps_proxy_spliced_total');
    const ended = [...text.matchAll(/^eps_proxy_splice_ends_total\{reason="[^"]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    if (ended >= spliced) return;
    if (Date.now() > deadline) throw new Error(`${spliced - ended} spliced sessions still open after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

export function roleLog(stack: DevStack, role: RoleName): string {
  try {
    return readFileSync(`${stack.logDir}/${role}.log`, 'utf8');
  } catch {
    return '';
  }
}

function bodyFile(body: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'eps-body-')), 'body.json');
  writeFileSync(file, body);
  return file;
}
