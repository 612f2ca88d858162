import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { encodePreamble, signProof, type Leg } from '../src/core/splice-wire.js';
import { fingerprintOf } from '../src/core/tls-material.js';
import { SessionRegistry, type LegPass, type SessionInfo, type SessionMessengers } from '../src/proxy/session-registry.js';
import { SpliceEndpoint } from '../src/proxy/splice-endpoint.js';

// What the dialers' proofs add to one brokering, isolated: the real registry, splice endpoint and
// splicer on loopback, one brokering at a time, open to spliced, with B and A signing their proofs
// (and the proxy verifying them) or, alternately, the same brokering without proofs. No bus, so
// the difference is the two signatures and two verifications and nothing else.
//
//   node dist/bench/proof-cost.js [brokerings per mode, default 2000]

const log = pino({ level: 'silent' });
const PROXY = 'bench-proxy';
const CERTS = 'settings/dev/certs';
const dev = (name: string) => ({ key: createPrivateKey(readFileSync(`${CERTS}/${name}.key`)), cert: new X509Certificate(readFileSync(`${CERTS}/${name}.crt`)) });
const legs: Record<Leg, ReturnType<typeof dev>> = { a: dev('hd-1'), b: dev('hd-2') };
const operatorOf: Record<string, Leg> = { 'bench-a': 'a', 'bench-b': 'b' };

function percentile(sorted: number[], p: number): number {
  return Math.round((sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0) * 1000);
}

export async function measureProofCost(perMode: number): Promise<Record<'withProofs' | 'withoutProofs', { p50Us: number; p99Us: number }>> {
  let onSpliced: (() => void) | undefined;
  const registry = new SessionRegistry({
    log,
    operator: PROXY,
    certificateOf: (operator) => {
      const leg = operatorOf[operator];
      if (!leg) return undefined;
      return { certificate: legs[leg].cert.toString(), fingerprint: fingerprintOf(legs[leg].cert) };
    },
    timeouts: { bDialMs: 5_000, aDialMs: 5_000 },
    onSpliced: () => onSpliced?.(),
  });
  const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, route: (p, s, r) => registry.route(p, s, r) });
  const { port } = await endpoint.listen();
  const sockets: Socket[] = [];
  const dial = async (bytes: Buffer) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    s.on('error', () => {});
    sockets.push(s);
    await once(s, 'connect');
    s.write(bytes);
  };
  const preamble = (proofs: boolean, session: SessionInfo, leg: Leg, pass: LegPass) =>
    encodePreamble(pass.token, proofs ? signProof(legs[leg].key, { proxy: PROXY, sessionId: session.sessionId, leg, token: pass.token, challenge: pass.challenge }) : undefined);

  const samples = { withProofs: [] as number[], withoutProofs: [] as number[] };
  for (let i = 0; i < perMode * 2; i++) {
    const proofs = i % 2 === 0;
    const messengers: SessionMessengers = {
      notifyB: async (s, pass) => {
        await dial(preamble(proofs, s, 'b', pass));
        return { accepted: true };
      },
      confirmToA: async (s, pass) => {
        setImmediate(() => void dial(preamble(proofs, s, 'a', pass)));
      },
    };
    const spliced = new Promise<void>((r) => (onSpliced = r));
    const started = performance.now();
    registry.open({ a: 'bench-a', b: 'bench-b', endpoint: `127.0.0.1:${port}` }, { messengers, proofs });
    await spliced;
    (proofs ? samples.withProofs : samples.withoutProofs).push(performance.now() - started);
    for (const s of sockets.splice(0)) s.destroy();
  }
  await registry.shutdown();
  await endpoint.close();
  const summary = (xs: number[]) => {
    const sorted = xs.slice(Math.floor(xs.length / 10)).sort((x, y) => x - y); // the first tenth warms up
    return { p50Us: percentile(sorted, 50), p99Us: percentile(sorted, 99) };
  };
  return { withProofs: summary(samples.withProofs), withoutProofs: summary(samples.withoutProofs) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const perMode = Number(process.argv[2] ?? 2000);
  const r = await measureProofCost(perMode);
  console.log(`open to spliced, in process, ${perMode} brokerings per mode, alternating:`);
  console.log(`  with proofs     p50 ${r.withProofs.p50Us} µs  p99 ${r.withProofs.p99Us} µs`);
  console.log(`  without proofs  p50 ${r.withoutProofs.p50Us} µs  p99 ${r.withoutProofs.p99Us} µs`);
  console.log(`  proofs add      p50 ${r.withProofs.p50Us - r.withoutProofs.p50Us} µs`);
}
