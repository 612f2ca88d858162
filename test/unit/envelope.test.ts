import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ReplayCache, createSigner, openEnvelope, sealEnvelope, type RequestEnvelope } from '../../src/bus/envelope.js';
import { fingerprintOf } from '../../src/core/tls-material.js';

const certs = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${certs}/${n}`, 'utf8');
const dir: Record<string, { certificate: string; fingerprint: string }> = {
  'hd-1': { certificate: pem('hd-1.crt'), fingerprint: fingerprintOf(pem('hd-1.crt')) },
  'hd-2': { certificate: pem('hd-2.crt'), fingerprint: fingerprintOf(pem('hd-2.crt')) },
};
const hd1 = createSigner('hd-1', pem('hd-1.key'));
const maxAgeMs = 30_000;

function seal(overrides: Partial<RequestEnvelope> = {}, now = Date.now()): RequestEnvelope {
  const env = sealEnvelope<RequestEnvelope>(hd1, { kind: 'request', from: 'hd-1', to: 'hd-2', id: '1', method: '_ping', params: {} }, now);
  return { ...env, ...overrides };
}

function open(env: unknown, opts: { replay?: ReplayCache; now?: number; maxBytes?: number } = {}) {
  const data = Buffer.from(typeof env === 'string' ? env : JSON.stringify(env));
  return openEnvelope(data, {
    self: 'hd-2',
    certificateOf: (op) => dir[op],
    replay: opts.replay ?? new ReplayCache(),
    maxAgeMs,
    maxBytes: opts.maxBytes ?? 64 * 1024,
    ...(opts.now !== undefined ? { now: opts.now } : {}),
  });
}

describe('bus envelopes', () => {
  it('envelope - a sealed envelope opens', () => {
    const r = open(seal());
    expect(r.ok).toBe(true);
  });

  it('envelope - a changed field breaks the signature', () => {
    const r = open({ ...seal(), method: 'connectionForward' });
    expect(r).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
  });

  it('envelope - a sender claiming another name is caught (forged from)', () => {
    // hd-1 signs but claims to be hd-2: the signature is checked against hd-2's certificate.
    const forged = sealEnvelope<RequestEnvelope>(hd1, { kind: 'request', from: 'hd-2', to: 'hd-2', id: '1', method: '_ping', params: {} });
    expect(open(forged)).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
  });

  it('envelope - once a certificate\'s key is cached, a directory entry with another fingerprint is still refused', () => {
    expect(open(seal()).ok).toBe(true);
    const swapped = { certificate: dir['hd-1']!.certificate, fingerprint: dir['hd-2']!.fingerprint };
    const r = openEnvelope(Buffer.from(JSON.stringify(seal())), {
      self: 'hd-2',
      certificateOf: (op) => (op === 'hd-1' ? swapped : dir[op]),
      replay: new ReplayCache(),
      maxAgeMs,
      maxBytes: 64 * 1024,
    });
    expect(r).toMatchObject({ ok: false, code: 'UNKNOWN_SENDER' });
    expect(open(seal()).ok).toBe(true);
  });

  it('envelope - a replayed envelope is refused the second time', () => {
    const replay = new ReplayCache();
    const env = seal();
    expect(open(env, { replay }).ok).toBe(true);
    expect(open(env, { replay })).toMatchObject({ ok: false, code: 'REPLAYED' });
  });

  it('envelope - a stale envelope is refused, and so is one from the future', () => {
    const now = Date.now();
    expect(open(seal({}, now - maxAgeMs - 1), { now })).toMatchObject({ ok: false, code: 'STALE' });
    expect(open(seal({}, now + maxAgeMs + 1), { now })).toMatchObject({ ok: false, code: 'STALE' });
  });

  it('envelope - unknown sender, wrong addressee, oversized and malformed are each named', () => {
    const stranger = sealEnvelope<RequestEnvelope>(hd1, { kind: 'request', from: 'nobody', to: 'hd-2', id: '1', method: 'x', params: {} });
    expect(open(stranger)).toMatchObject({ ok: false, code: 'UNKNOWN_SENDER' });
    expect(open(sealEnvelope<RequestEnvelope>(hd1, { kind: 'request', from: 'hd-1', to: 'hd-3', id: '1', method: 'x', params: {} }))).toMatchObject({ ok: false, code: 'MISADDRESSED' });
    expect(open(seal(), { maxBytes: 10 })).toMatchObject({ ok: false, code: 'OVERSIZED' });
    expect(open('{not json')).toMatchObject({ ok: false, code: 'MALFORMED', detail: 'not JSON' });
    expect(open({ ...seal(), params: 'x' })).toMatchObject({ ok: false, code: 'MALFORMED' });
    expect(open({ ...seal(), extra: 1 })).toMatchObject({ ok: false, code: 'MALFORMED' });
  });

  it('envelope - the replay cache forgets nonces once they would be stale anyway', () => {
    const cache = new ReplayCache();
    expect(cache.remember('a', 1_000, 0)).toBe(true);
    expect(cache.remember('a', 1_000, 500)).toBe(false);
    expect(cache.remember('b', 5_000, 2_000)).toBe(true);
    expect(cache.size).toBe(1);
  });
});
