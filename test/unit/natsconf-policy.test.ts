import { describe, expect, it } from 'vitest';
import type { RecordData } from '../../src/directory/types.js';
import { accountLinks, busPolicy, mayPublish, maySubscribe, permittedCalls, subjectMatches, type BusPolicyInput, type BusPrincipal } from '../../src/natsconf/policy.js';
import { renderNatsConfig } from '../../src/natsconf/render.js';
import { readPolicyInput } from '../../src/natsconf/sources.js';

const dev = readPolicyInput('settings/dev', ['nats-admin'], ['nats-admin-games']);
const principals = busPolicy(dev);
const p = (name: string): BusPrincipal => {
  const found = principals.find((x) => x.name === name);
  if (!found) throw new Error(`no principal ${name}`);
  return found;
};
const OPERATORS = ['hd-1', 'hd-2', 'public-proxy-eps-1', 'public-proxy-hyper-1'];
const EVERYONE = principals.map((x) => x.name);
const ADMINS = ['nats-admin', 'nats-admin-games'];
const NOT_ADMIN = EVERYONE.filter((n) => !ADMINS.includes(n));
const OPS = principals.filter((x) => x.account === 'OPS').map((x) => x.name);
const generated = renderNatsConfig(principals, accountLinks(dev), { host: '127.0.0.1', port: 4333, storeDir: '/s', tls: { cert: '/c', key: '/k', ca: '/ca' } });

describe('nats config policy', () => {
  it('nats config policy - the dev settings yield one principal per certificate that uses the bus, and the admin', () => {
    expect(EVERYONE).toEqual(['games-1', 'hd-1', 'hd-2', 'nats-admin', 'nats-admin-games', 'public-proxy-eps-1', 'public-proxy-hyper-1', 'sd-1']);
    // The proxy role holds public-proxy-eps-1's certificate: one principal with both roles' rights.
    expect(dev.roles.filter((r) => r.principal === 'public-proxy-eps-1').map((r) => r.kind).sort()).toEqual(['eps', 'proxy']);
  });

  it('nats config policy - games and its admin live in the GAMES account, everyone else in OPS; OPS lends GAMES relayRequest and the pokes', () => {
    expect(principals.filter((x) => x.account === 'GAMES').map((x) => x.name)).toEqual(['games-1', 'nats-admin-games']);
    expect(OPS).toEqual(['hd-1', 'hd-2', 'nats-admin', 'public-proxy-eps-1', 'public-proxy-hyper-1', 'sd-1']);
    expect(accountLinks(dev)).toEqual({ services: ['eps.op.public-proxy-eps-1.relayRequest'], streams: ['eps.sd.records'] });
    // The proxy answers games on the reply subject the service import made, not in games' inbox.
    expect(mayPublish(p('public-proxy-eps-1'), '_R_.AbCdEf.GhIjKl')).toBe(true);
    expect(mayPublish(p('public-proxy-eps-1'), '_INBOX_games-1.x')).toBe(false);
    for (const who of NOT_ADMIN.filter((n) => n !== 'public-proxy-eps-1')) expect(mayPublish(p(who), '_R_.AbCdEf.GhIjKl'), who).toBe(false);
    // A games role on a certificate that also has another role cannot be placed in one account.
    const clash: BusPolicyInput = { ...dev, roles: [...dev.roles, { kind: 'eps', principal: 'games-1' }] };
    expect(() => busPolicy(clash)).toThrow(/one account/);
  });

  it('nats config policy - an operator subscribes to its own subjects and inboxes only', () => {
    for (const op of OPERATORS) {
      expect(p(op).subscribe, op).toEqual([`_INBOX_${op}.>`, 'eps.sd.records', `eps.op.${op}.>`].sort());
      expect(maySubscribe(p(op), `eps.op.${op}._ping`), op).toBe(true);
      expect(maySubscribe(p(op), `eps.op.${op}.>`), op).toBe(true);
      expect(maySubscribe(p(op), `_INBOX_${op}.abc.*`), op).toBe(true);
      for (const other of EVERYONE.filter((n) => n !== op)) {
        expect(maySubscribe(p(op), `eps.op.${other}._ping`), `${op} on ${other}`).toBe(false);
        expect(maySubscribe(p(op), `_INBOX_${other}.abc.1`), `${op} on ${other}'s inbox`).toBe(false);
      }
      for (const wide of ['>', 'eps.>', 'eps.op.>', 'eps.op.*._ping', '_INBOX.>', 'eps.sd.*', '$KV.EPS_GAMES.>']) {
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
    // public-proxy-hyper-1 is in the proxies group too, but hd-1 and hd-2 are reachable only
    // through public-proxy-eps-1 (their grpc_server channel): it forwards to nobody.
    expect(allowed('public-proxy-hyper-1')).toEqual([]);
    expect(mayPublish(p('hd-1'), 'eps.op.hd-2.connectionForward')).toBe(false);
    expect(mayPublish(p('public-proxy-eps-1'), 'eps.op.hd-2._ping')).toBe(false);
    expect(mayPublish(p('sd-1'), 'eps.op.hd-2._ping')).toBe(false);
  });

  it('nats config policy - answers go only into the inboxes of those who may ask (and the admin), nowhere else', () => {
    const inboxes = (who: string) => p(who).publish.filter((s) => s.startsWith('_INBOX'));
    // hd-2 is asked by peers (_ping) and proxies (connectionForward).
    // hd-2 is asked by peers (_ping) and the proxy it is reachable through (connectionForward).
    expect(inboxes('hd-2')).toEqual(['_INBOX_hd-1.>', '_INBOX_hd-2.>', '_INBOX_nats-admin.>', '_INBOX_public-proxy-eps-1.>']);
    // The proxy is asked by peers (connectionRequest, _ping) and, for relays, by games (from GAMES: _R_).
    expect(inboxes('public-proxy-eps-1')).toEqual(['_INBOX_hd-1.>', '_INBOX_hd-2.>', '_INBOX_nats-admin.>']);
    expect(inboxes('sd-1')).toEqual([]);
    // games-1 asks the proxy for relays and serves nothing: nothing in OPS can reach GAMES.
    expect(inboxes('games-1')).toEqual([]);
    expect(p('games-1').subscribe).toEqual(['_INBOX_games-1.>', 'eps.sd.records']);
    // No responder may answer into a subject that is no inbox: a request naming the directory
    // stream, the bucket or the JetStream API as its reply subject gets no write there.
    expect(generated).not.toContain('allow_responses');
    for (const who of NOT_ADMIN.filter((n) => n !== 'sd-1')) expect(mayPublish(p(who), 'eps.sd.records'), who).toBe(false);
  });

  it('nats config policy - the bus caps message size and connections', () => {
    expect(generated).toMatch(/^max_payload: 327680$/m);
    expect(generated).toMatch(/^max_connections: 1024$/m);
  });

  it('nats config policy - only sd writes the directory stream; operators and sd read it by sequence and create no consumer', () => {
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.sd.records'), who).toBe(['sd-1', ...ADMINS].includes(who));
    for (const who of EVERYONE) expect(mayPublish(p(who), '$JS.API.STREAM.CREATE.EPS_SD_RECORDS'), who).toBe(['sd-1', ...ADMINS].includes(who));
    for (const who of [...OPERATORS, 'sd-1']) {
      expect(p(who).publish.filter((s) => s.includes('EPS_SD_RECORDS') && s !== '$JS.API.STREAM.CREATE.EPS_SD_RECORDS'), who).toEqual([
        '$JS.API.STREAM.INFO.EPS_SD_RECORDS',
        '$JS.API.STREAM.MSG.GET.EPS_SD_RECORDS',
      ]);
      expect(maySubscribe(p(who), 'eps.sd.records'), who).toBe(true);
    }
    // No reader may create, ask or delete a consumer, ack or answer flow control (findings 4, 6).
    for (const who of NOT_ADMIN) {
      for (const api of ['$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS.x.eps.sd.records', '$JS.API.CONSUMER.MSG.NEXT.EPS_SD_RECORDS.x', '$JS.API.CONSUMER.DELETE.EPS_SD_RECORDS.x', '$JS.ACK.EPS_SD_RECORDS.x.1.1.1.1.0', '$JS.FC.EPS_SD_RECORDS.x']) {
        expect(mayPublish(p(who), api), `${who} ${api}`).toBe(false);
      }
    }
    // games reads the directory from the sd over HTTPS: its account holds no directory stream.
    expect(p('games-1').publish.filter((s) => s.includes('EPS_SD_RECORDS'))).toEqual([]);
  });

  it('nats config policy - nobody but an admin changes a stream: no update of the directory stream or the bucket', () => {
    for (const stream of ['EPS_SD_RECORDS', 'KV_EPS_GAMES']) {
      for (const who of NOT_ADMIN) expect(mayPublish(p(who), `$JS.API.STREAM.UPDATE.${stream}`), `${who} ${stream}`).toBe(false);
    }
    for (const who of NOT_ADMIN) expect(p(who).publish.some((s) => s.includes('STREAM.UPDATE')), who).toBe(false);
  });

  it('nats config policy - only games principals touch the games bucket', () => {
    for (const who of EVERYONE) {
      const games = ['games-1', ...ADMINS].includes(who);
      expect(mayPublish(p(who), '$KV.EPS_GAMES.game.abc'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.DIRECT.GET.KV_EPS_GAMES.$KV.EPS_GAMES.game.abc'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.STREAM.CREATE.KV_EPS_GAMES'), who).toBe(games);
      expect(mayPublish(p(who), '$JS.API.CONSUMER.CREATE.KV_EPS_GAMES.w.$KV.EPS_GAMES.>'), who).toBe(games);
    }
  });

  it('nats config policy - games uses its lobby and limits buckets as it uses its games bucket, and deletes messages of its lobby only', () => {
    for (const bucket of ['EPS_GAMES_LOBBY', 'EPS_GAMES_LIMITS']) {
      for (const who of EVERYONE) {
        const games = ['games-1', ...ADMINS].includes(who);
        expect(mayPublish(p(who), `$KV.${bucket}.e.abc`), `${who} ${bucket}`).toBe(games);
        expect(mayPublish(p(who), `$JS.API.DIRECT.GET.KV_${bucket}`), `${who} ${bucket}`).toBe(games);
        expect(mayPublish(p(who), `$JS.API.STREAM.CREATE.KV_${bucket}`), `${who} ${bucket}`).toBe(games);
        expect(mayPublish(p(who), `$JS.API.STREAM.UPDATE.KV_${bucket}`), `${who} ${bucket}`).toBe(ADMINS.includes(who));
        expect(mayPublish(p(who), `$JS.API.STREAM.PURGE.KV_${bucket}`), `${who} ${bucket}`).toBe(ADMINS.includes(who));
      }
    }
    for (const who of EVERYONE) {
      expect(mayPublish(p(who), '$JS.API.STREAM.MSG.DELETE.KV_EPS_GAMES_LOBBY'), who).toBe(['games-1', ...ADMINS].includes(who));
      expect(mayPublish(p(who), '$JS.API.STREAM.MSG.DELETE.KV_EPS_GAMES_LIMITS'), who).toBe(ADMINS.includes(who));
    }
    expect(p('games-1').publish.filter((s) => s.includes('MSG.DELETE'))).toEqual(['$JS.API.STREAM.MSG.DELETE.KV_EPS_GAMES_LOBBY']);
  });

  it('nats config policy - nobody but the admin deletes or purges a stream or bucket, or deletes a message', () => {
    for (const stream of ['EPS_SD_RECORDS', 'KV_EPS_GAMES']) {
      for (const api of ['STREAM.DELETE', 'STREAM.PURGE', 'STREAM.MSG.DELETE']) {
        for (const who of EVERYONE) expect(mayPublish(p(who), `$JS.API.${api}.${stream}`), `${who} ${api} ${stream}`).toBe(ADMINS.includes(who));
      }
    }
    for (const who of NOT_ADMIN) {
      expect(mayPublish(p(who), '$JS.API.STREAM.LIST'), who).toBe(false);
      expect(maySubscribe(p(who), '>'), who).toBe(false);
      expect(mayPublish(p(who), '>'), who).toBe(false);
    }
  });

  it('nats config policy - only the proxy principal serves relayRequest; only the rendezvous may ask it; the old plain subject is nobody\'s', () => {
    for (const who of EVERYONE) expect(maySubscribe(p(who), 'eps.op.public-proxy-eps-1.relayRequest'), who).toBe(['public-proxy-eps-1', ...ADMINS].includes(who));
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.op.public-proxy-eps-1.relayRequest'), who).toBe(['games-1', ...ADMINS].includes(who));
    for (const who of EVERYONE) expect(maySubscribe(p(who), 'eps.relay.public-proxy-eps-1.request'), who).toBe(ADMINS.includes(who));
    for (const who of EVERYONE) expect(mayPublish(p(who), 'eps.relay.public-proxy-eps-1.request'), who).toBe(ADMINS.includes(who));
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
    expect(ab.subscribe).toEqual(['_INBOX_a~2eb.>', 'eps.op.a~2eb.>', 'eps.sd.records']);
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
    const text = renderNatsConfig(principals, accountLinks(dev), { host: '127.0.0.1', port: 4333, storeDir: '/s', tls: { cert: '/c', key: '/k', ca: '/ca' } });
    expect(text).toContain('verify_and_map: true');
    expect(text).toContain('listen: "127.0.0.1:4333"');
    expect(text).toContain('"$JS.API.STREAM.INFO.EPS_SD_RECORDS"');
    expect(text).toContain('{ service: { account: OPS, subject: "eps.op.public-proxy-eps-1.relayRequest" } }');
    expect(text).toContain('{ stream: "eps.sd.records", accounts: [GAMES] }');
    expect(text).not.toMatch(/[^"]\$JS/);
    expect(text.match(/user: /g)).toHaveLength(principals.length);
  });
});
