import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fingerprintOf, readTlsMaterial } from '../src/core/tls-material.js';
import { connectPeerClientDirect } from '../src/grpc/peer-client.js';
import { joinAsA } from './join-as-a.js';

// One contender of bench/brokering.ts's concurrent mode, in a process of its own: `concurrency`
// requesters, each in a loop, for `durationMs`.
//   brokered  each request is A's side of a new brokered channel: each requester's PeerChannels
//             of the given build (BENCH_ROOT; kept across its requests, as hd-1 keeps one)
//             speaking as hd-1 on that stack's bus (bench/join-as-a.ts: its own connection,
//             hd-1's certificate, hd-1's settings as the stack wrote them: EPS_SETTINGS), calling
//             hd-2._ping and closing the channel, so every request brokers anew through the real
//             proxy and the real hd-2
//   direct    each request is a fresh mTLS gRPC connect + one unary call + close to the anchor
//             (BENCH_ADDRESS), with the grpc-js client an operator would use
// Protocol (IPC): the child sends {type:'ready'} once set up (bus connected, hd-2 in the
// directory), the parent answers {type:'go'} after reading every process's CPU, the child sends
// {type:'done', completed, failed, latencies} when the time is up.

type Request = () => Promise<void>;
/** Makes one requester's loop body (each requester may keep state across its requests). */
type Requester = () => Request;

interface Go {
  type: 'go';
  durationMs: number;
  concurrency: number;
}

const CERTS = 'settings/dev/certs';

async function brokeredRequester(root: string): Promise<Requester> {
  const joined = await joinAsA(root, 'bench-requesters:hd-1');
  // One PeerChannels per requester, as hd-1 keeps one for its life (its machine is provided once
  // per PeerChannels): each request closes its channel after the call, so the next one brokers anew.
  return () => {
    const channels = joined.channels();
    return async () => {
      try {
        await channels.call('hd-2', '_ping', {}, randomUUID());
      } finally {
        channels.close();
      }
    };
  };
}

function directRequester(address: string): Requester {
  const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
  const expectedPeer = { name: 'hd-2', fingerprint: fingerprintOf(readFileSync(`${CERTS}/hd-2.crt`)) };
  return () => async () => {
    const client = await connectPeerClientDirect({ tls, expectedPeer, address });
    try {
      await client.call('_ping', {});
    } finally {
      client.close();
    }
  };
}

async function run(requester: Requester, go: Go): Promise<{ completed: number; failed: number; errors: string[]; latencies: number[]; wallMs: number }> {
  const latencies: number[] = [];
  const errors: string[] = [];
  let failed = 0;
  const t0 = performance.now();
  const end = t0 + go.durationMs;
  const loop = async (): Promise<void> => {
    const request = requester();
    while (performance.now() < end) {
      const started = performance.now();
      try {
        await request();
        latencies.push(performance.now() - started);
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push(String((err as Error).message ?? err));
      }
    }
  };
  await Promise.all(Array.from({ length: go.concurrency }, loop));
  return { completed: latencies.length, failed, errors, latencies, wallMs: performance.now() - t0 };
}

async function main(): Promise<void> {
  const mode = process.env['BENCH_MODE'];
  const requester =
    mode === 'brokered' ? await brokeredRequester(resolve(process.env['BENCH_ROOT'] ?? '.')) : directRequester(process.env['BENCH_ADDRESS'] ?? '');
  // One request of warm-up: code paths compiled, the first brokering's directory look-ups done.
  await requester()();
  process.once('message', (msg: Go) => {
    void run(requester, msg).then((result) => {
      process.send!({ type: 'done', ...result }, () => process.exit(0));
    });
  });
  process.send!({ type: 'ready' });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
