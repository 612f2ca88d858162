import { describe, expect, it } from 'vitest';
import type { RecordData } from '../../src/directory/types.js';
import { busPolicy, mayPublish, maySubscribe, permittedCalls, subjectMatches, type BusPolicyInput, type BusPrincipal } from '../../src/natsconf/policy.js';
import { renderNatsConfig } from '../../src/natsconf/render.js';
import { readPolicyInput } from '../../src/natsconf/sources.js';

const dev = readPolicyInput('settings/dev', ['nats-admin']);
const principals = busPolicy(dev);
const p = (name: string): BusPrincipal => {
  const found = principals.find((x) => x.name === name);
  if (!found) throw new Error(`no principal ${name}`);
  return found;
};
const OPERATORS = ['hd-1', 'hd-2', 'public-proxy-eps-1', 'public-proxy-hyper-1'];
const EVERYONE = principals.map((x) => x.name);
const NOT_ADMIN = EVERYONE.filter((n) => n !== 'nats-admin');
const generated = renderNatsConfig(principals, { host: '127.0.0.1', port: 4333, storeDir: '/s', tls: { cert: '/c', key: '/k', ca: '/ca' } });

describe('nats config policy', () => {
  it('nats config policy - the dev settings yield one principal per certificate that uses the bus, and the admin', () => {
    expect(EVERYONE).toEqual(['games-1', 'hd-1', 'hd-2', 'nats-admin', 'public-proxy-eps-1', 'public-proxy-hyper-1', 'sd-1']);
    // The proxy role holds public-proxy-eps-1's certificate: one principal with both roles' rights.
    expect(dev.roles.filter((r) => r.principal === 'public-proxy-eps-1').map((r) => r.kind).sort()).toEqual(['eps', 'proxy']);
  });

  it('nats config policy - an operator subscribes to its own subjects and inboxes only', () => {
    for (const op of OPERATORS) {
      expect(maySubscribe(p(op), `eps.op.${op}._ping`), op).toBe(true);
      expect(maySubscribe(p(op), `eps.op.${op}.>`), op).toBe(true);
      expect(maySubscribe(p(op), `_INBOX_${op}.abc.*`), op).toBe(true);
      for (const other of EVERYONE.filter((n) => n !== op)) {
        expect(maySubscribe(p(op), `eps.op.${other}._ping`), `${op} on ${other}`).toBe(false);
        expect(maySubscribe(p(op), `_INBOX_${other}.abc.1`), `${op} on ${other}'s inbox`).toBe(false);
      }
      for (const wide of ['>', 'eps.>', 'eps.op.>', 'eps.op.*._ping', '_INBOX.>', 'eps.sd.records', '$KV.EPS_GAMES.>']) {
        expect(maySubscribe(p(op), wide), `${op} on ${wide}`).toBe(false);
      }
    }
  });

  it('nats config policy - requests go only to the peers and methods the directory permits', () => {
    const allowed = (who: string) =>
      p(who)
        .publish.filter((s) => s.startsWith('eps.op.'))
        .sort();
    expect(allowed('hd-1')).toEqual([
      'eps.op.hd-1._ping',
      'eps.op.hd-2._ping',
      'eps.op.public-proxy-eps-1._ping',
      'eps.op.public-proxy-eps-1.connectionRequest',
      'eps.op.public-proxy-hyper-1._ping',
      'eps.op.public-proxy-hyper-1.connectionRequest',
    ]);
    expect(allowed('public-proxy-eps-1')).toEqual(['eps.op.hd-1.connectionForward', 'eps.op.hd-2.connectionForward']);
    expect(mayPublish(p('hd-1'), 'eps.op.hd-2.connectionForward')).toBe(false);
    expect(mayPublish(p('public-proxy-eps-1'), 'eps.op.hd-2._ping')).toBe(false);
    expect(mayPublish(p('sd-1'), 'eps.op.hd-2._ping')).toBe(false);
  });

  it('nats config policy - answers go only into the inboxes of those who may ask (and the admin), nowhere else', () => {
    const inboxes = (who: string) => p(who).publish.filter((s) => s.startsWith('_INBOX'));
    // hd-2 is asked by peers (_ping) and proxies (connectionForward).
    expect(inboxes('hd-2')).toEqual(['_INBOX_hd-1.>', '_INBOX_hd-2.>', '_INBOX_nats-admin.>', '_INBOX_public-proxy-eps-1.>', '_INBOX_public-proxy-hyper-1.>']);
    // The proxy is asked by peers (connectionRequest, _ping) and, for relays, by games.
    expect(inboxes('public-proxy-eps-1')).toEqual(['_INBOX_games-1.>', '_INBOX_hd-1.>', '_INBOX_hd-2.>', '_INBOX_nats-admin.>']);
    expect(inboxes('sd-1')).toEqual([]);
    // games-1 is an operator (it asks the proxy for relays) whom nobody but the admin asks anything.
    expect(inboxes('games-1')).toEqual(['_INBOX_nats-admin.>']);
    // No responder may answer into a subject that is no inbox: a request naming the directory
    // stream, the bucket or the JetStream API as its reply subject gets no write there.
    expect(generated).not.toContain('allow_responses');
    for (const who of NOT_ADMIN.filter((n) => n !== 'sd-1')) expect(mayPublish(p(who), 'eps.sd.records'), who).toBe(false);
  });

  it('nats config policy - only sd writes the directory stream; every operator and sd may read it', () => {
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.sd.records'), who).toBe(['sd-1', 'nats-admin'].includes(who));
    for (const who of EVERYONE) expect(mayPublish(p(who), '$JS.API.STREAM.CREATE.EPS_SD_RECORDS'), who).toBe(['sd-1', 'nats-admin'].includes(who));
    for (const who of [...OPERATORS, 'sd-1', 'games-1']) {
      expect(mayPublish(p(who), '$JS.API.STREAM.INFO.EPS_SD_RECORDS'), who).toBe(true);
      expect(mayPublish(p(who), '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS.abc.eps.sd.records'), who).toBe(true);
      expect(mayPublish(p(who), '$JS.API.CONSUMER.MSG.NEXT.EPS_SD_RECORDS.abc'), who).toBe(true);
    }
    // Reading is all it is: no consumer of the stream may change it.
    for (const who of NOT_ADMIN.filter((n) => n !== 'sd-1')) expect(mayPublish(p(who), '$JS.API.STREAM.UPDATE.EPS_SD_RECORDS'), who).toBe(false);
  });

  it('nats config policy - only games principals touch the games bucket', () => {
    for (const who of EVERYONE) {
      const games = ['games-1', 'nats-admin'].includes(who);
      expect(mayPublish(p(who), '$KV.EPS_GAMES.game.abc'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.DIRECT.GET.KV_EPS_GAMES.$KV.EPS_GAMES.game.abc'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.STREAM.CREATE.KV_EPS_GAMES'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.CONSUMER.CREATE.KV_EPS_GAMES.w.$KV.EPS_GAMES.>'), who).toBe(games);
    }
  });

  it('nats config policy - nobody but the admin deletes or purges a stream or bucket, or deletes a message', () => {
    for (const stream of ['EPS_SD_RECORDS', 'KV_EPS_GAMES']) {
      for (const api of ['STREAM.DELETE', 'STREAM.PURGE', 'STREAM.MSG.DELETE']) {
        for (const who of EVERYONE) expect(mayPublish(p(who), `$JS.API.${api}.${stream}`), `${who} ${api} ${stream}`).toBe(who === 'nats-admin');
      }
    }
    for (const who of NOT_ADMIN) {
      expect(mayPublish(p(who), '$JS.API.STREAM.LIST'), who).toBe(false);
      expect(maySubscribe(p(who), '>'), who).toBe(false);
      expect(mayPublish(p(who), '>'), who).toBe(false);
    }
  });

  it('nats config policy - only the proxy principal serves relayRequest; only the rendezvous may ask it; the old plain subject is nobody\'s', () => {
    for (const who of EVERYONE) expect(maySubscribe(p(who), 'eps.op.public-proxy-eps-1.relayRequest'), who).toBe(['public-proxy-eps-1', 'nats-admin'].includes(who));
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.op.public-proxy-eps-1.relayRequest'), who).toBe(['games-1', 'nats-admin'].includes(who));
    for (const who of EVERYONE) expect(maySubscribe(p(who), 'eps.relay.public-proxy-eps-1.request'), who).toBe(who === 'nats-admin');
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.relay.public-proxy-eps-1.request'), who).toBe(who === 'nats-admin');
  });

  it('nats config policy - rights follow the directory: a new permission, a wildcard method, a replaced service', () => {
    const base: RecordData[] = [
      { kind: 'operator', name: 'a.b', certificate: '-----BEGIN CERTIFICATE-----' },
      { kind: 'operator', name: 'c', certificate: '-----BEGIN CERTIFICATE-----' },
      { kind: 'group', name: 'g' },
      { kind: 'member', group: 'g', operator: 'a.b' },
    ];
    const input = (directory: RecordData[]): BusPolicyInput => ({ directory, roles: [], admins: [] });
    expect(busPolicy(input(base)).find((x) => x.name === 'a.b')!.publish.filter((s) => s.startsWith('eps.'))).toEqual([]);
    const withService: RecordData[] = [...base, { kind: 'service', operator: 'c', name: 's', permissions: [{ group: 'g', methods: ['m1', 'm2'] }] }];
    expect(permittedCalls(withService, 'a.b')).toEqual([
      { target: 'c', method: 'm1' },
      { target: 'c', method: 'm2' },
    ]);
    expect(permittedCalls(withService, 'c')).toEqual([]);
    const wildcard: RecordData[] = [...withService, { kind: 'service', operator: 'c', name: 's', permissions: [{ group: 'g', methods: ['*'] }] }];
    const ab = busPolicy(input(wildcard)).find((x) => x.name === 'a.b')!;
    expect(ab.publish.filter((s) => s.startsWith('eps.'))).toEqual(['eps.op.c.*']);
    // A dot in an operator's name is escaped, so it cannot widen a subject.
    expect(ab.subscribe).toEqual(['_INBOX_a~2eb.>', 'eps.op.a~2eb.>']);
  });

  it('nats config policy - subject matching follows NATS: * is one token, > one or more', () => {
    expect(subjectMatches('a.*.c', 'a.b.c')).toBe(true);
    expect(subjectMatches('a.*.c', 'a.b.b.c')).toBe(false);
    expect(subjectMatches('a.>', 'a')).toBe(false);
    expect(subjectMatches('a.>', 'a.b.c')).toBe(true);
    expect(subjectMatches('a.b', 'a.b')).toBe(true);
    expect(subjectMatches('a.b', 'a.b.c')).toBe(false);
  });

  it('nats config policy - the rendered configuration quotes every subject and maps certificates to users', () => {
    const text = renderNatsConfig(principals, { host: '127.0.0.1', port: 4333, storeDir: '/s', tls: { cert: '/c', key: '/k', ca: '/ca' } });
    expect(text).toContain('verify_and_map: true');
    expect(text).toContain('listen: "127.0.0.1:4333"');
    expect(text).toContain('"$JS.API.INFO"');
    expect(text).not.toMatch(/[^"]\$JS/);
    expect(text.match(/user: /g)).toHaveLength(principals.length);
  });
});
