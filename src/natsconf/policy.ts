import { inboxPrefixOf, subjectToken } from '../core/nats.js';
import { SD_RECORDS_SUBJECT } from '../directory/client.js';
import type { RecordData } from '../directory/types.js';
import { gamesBuckets, lobbyBucket } from '../games/buckets.js';

// Who may do what on the bus, derived from the same sources as the directory and the
// certificates. Pure, so every rule is unit-tested; render.ts turns the result into nats-server's
// configuration and sources.ts reads the inputs from the settings tree.

/** How a process of a role uses the bus: its kind, and the principal its certificate maps to. */
export type RoleBinding =
  | { kind: 'sd'; principal: string; stream: string }
  | { kind: 'eps'; principal: string }
  /** The proxy serves the bus as `operator`, whose certificate it holds. */
  | { kind: 'proxy'; principal: string; operator: string }
  | { kind: 'games'; principal: string; bucket: string };

/**
 * The bus is two NATS accounts. A JetStream consumer's deliver_subject is never checked against
 * its creator's publish rights, so whoever may create a consumer on a stream can have it delivered
 * into any subject of the same account that something listens on. Games, the only principal that
 * needs consumers (on its KV bucket), therefore lives in an account of its own: its consumers
 * deliver inside GAMES, where nothing but games and the pokes it imports live. OPS holds every
 * other principal and the directory stream; it lends GAMES exactly the services the directory lets
 * games call (relayRequest) and the records' pokes.
 */
export const OPS_ACCOUNT = 'OPS';
export const GAMES_ACCOUNT = 'GAMES';

/**
 * The reply subjects nats-server gives a request that crossed from another account through a
 * service import (`_R_.<prefix>.<id>`): a responder answers there, not into the requester's inbox.
 * Nothing in OPS can subscribe to them, and the server forwards only the first answer of a live
 * import, so this is the narrowest right that lets the proxy answer games.
 */
export const IMPORTED_REPLIES = '_R_.>';

export interface BusPolicyInput {
  /** The directory's records, in order: operators, groups, members and service permissions. */
  directory: RecordData[];
  roles: RoleBinding[];
  /** Principals with every right in OPS (operator tools, test setup): the only ones who may delete there. */
  admins: string[];
  /** The same in GAMES (the games bucket). */
  gamesAdmins?: string[];
  /** More directory streams and games buckets than the roles name (test servers use their own
   *  names): readers read, sd principals create and games principals use each of them. */
  extraStreams?: string[];
  extraBuckets?: string[];
}

export interface BusPrincipal {
  /** The user nats-server maps a certificate to (its DNS SAN, see busPrincipalOf). */
  name: string;
  /** OPS_ACCOUNT or GAMES_ACCOUNT. */
  account: string;
  publish: string[];
  subscribe: string[];
}

/** What OPS lends GAMES: services games may request, streams games may receive. */
export interface AccountLinks {
  services: string[];
  streams: string[];
}

export const opSubjects = (operator: string): string => `eps.op.${subjectToken(operator)}.>`;

/**
 * Reading the directory stream as its followers do (src/directory/follower.ts): its info and one
 * message by sequence, and the records' subject as a poke. No consumer API (see OPS_ACCOUNT), no
 * direct get, nothing that changes the stream.
 */
export function streamReadSubjects(stream: string): string[] {
  return [`$JS.API.STREAM.INFO.${stream}`, `$JS.API.STREAM.MSG.GET.${stream}`];
}

/**
 * What a games server does with its KV bucket: create it when missing, read, write, list its keys
 * (an ordered consumer, delivered inside GAMES). No update: a stream's subjects or limits are the
 * admin's, or games could widen its stream to capture what its account carries.
 */
export function bucketSubjects(bucket: string): string[] {
  const stream = `KV_${bucket}`;
  return [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
    `$KV.${bucket}.>`,
  ];
}

/** The method a proxy forwards a brokered connection with; see reachableThrough. */
export const FORWARD_METHOD = 'connectionForward';

/** Every (target, method) pair `caller` may request, from the directory's service permissions. */
export function permittedCalls(directory: RecordData[], caller: string): { target: string; method: string }[] {
  const groups = new Set(directory.flatMap((r) => (r.kind === 'member' && r.operator === caller ? [r.group] : [])));
  // A later service record of the same operator and name replaces the earlier one, as in the chain.
  const services = new Map<string, Extract<RecordData, { kind: 'service' }>>();
  for (const r of directory) if (r.kind === 'service') services.set(`${r.operator}\u0000${r.name}`, r);
  const calls = new Map<string, { target: string; method: string }>();
  for (const s of services.values()) {
    for (const p of s.permissions) {
      if (!groups.has(p.group)) continue;
      for (const m of p.methods) {
        calls.set(`${s.operator}\u0000${m}`, { target: s.operator, method: m });
      }
    }
  }
  return [...calls.values()];
}

/** The proxies `operator`'s channels name: the only ones that may forward a connection to it. */
export function reachableThrough(directory: RecordData[], operator: string): Set<string> {
  // A later channel record of the same operator and type replaces the earlier one, as in the chain.
  const channels = new Map<string, string | undefined>();
  for (const r of directory) if (r.kind === 'channel' && r.operator === operator) channels.set(r.channel.type, r.channel.proxy);
  return new Set([...channels.values()].filter((p): p is string => p !== undefined));
}

/**
 * The calls that become publish rights: a connectionForward only from a proxy the target is
 * reachable through (the group permission lets every proxy forward; the proxy code refuses the
 * others as wrongProxy, and now the bus does too).
 */
function busCalls(directory: RecordData[], caller: string): { target: string; method: string }[] {
  return permittedCalls(directory, caller).filter((c) => c.method !== FORWARD_METHOD || reachableThrough(directory, c.target).has(caller));
}

class Rights {
  readonly publish = new Set<string>();
  readonly subscribe = new Set<string>();
  constructor(readonly account: string) {}
}

/** Which principals live in GAMES: the games roles' and the GAMES admins. */
function gamesPrincipals(input: BusPolicyInput): Set<string> {
  const games = new Set([...input.roles.flatMap((r) => (r.kind === 'games' ? [r.principal] : [])), ...(input.gamesAdmins ?? [])]);
  for (const r of input.roles) {
    if (r.kind !== 'games' && games.has(r.principal)) {
      throw new Error(`${r.principal} has a games role and a ${r.kind} role: a principal lives in one account, give each role its own certificate`);
    }
  }
  return games;
}

/** The services and streams OPS exports to GAMES (and GAMES imports). */
export function accountLinks(input: BusPolicyInput): AccountLinks {
  const games = gamesPrincipals(input);
  const operators = new Set(input.directory.flatMap((r) => (r.kind === 'operator' ? [r.name] : [])));
  const services = new Set<string>();
  for (const g of games) {
    if (!operators.has(g)) continue;
    for (const { target, method } of busCalls(input.directory, g)) {
      if (!games.has(target)) services.add(`eps.op.${subjectToken(target)}.${method}`);
    }
  }
  return { services: [...services].sort(), streams: [SD_RECORDS_SUBJECT] };
}

/** The principals and their rights, least privilege: anything not listed is refused. */
export function busPolicy(input: BusPolicyInput): BusPrincipal[] {
  const operators = input.directory.flatMap((r) => (r.kind === 'operator' ? [r.name] : []));
  const games = gamesPrincipals(input);
  const accountOf = (name: string) => (games.has(name) ? GAMES_ACCOUNT : OPS_ACCOUNT);
  const streams = [...new Set([...input.roles.flatMap((r) => (r.kind === 'sd' ? [r.stream] : [])), ...(input.extraStreams ?? [])])];
  const buckets = [...new Set([...input.roles.flatMap((r) => (r.kind === 'games' ? [r.bucket] : [])), ...(input.extraBuckets ?? [])])];
  const inbox = (principal: string) => `${inboxPrefixOf(principal)}.>`;
  const byName = new Map<string, Rights>();
  const rights = (name: string): Rights => {
    let r = byName.get(name);
    if (!r) {
      r = new Rights(accountOf(name));
      // Every principal reads its own replies, and only its own.
      r.subscribe.add(inbox(name));
      byName.set(name, r);
    }
    return r;
  };
  // The poke: every follower subscribes to the records' subject (in GAMES, to OPS's export).
  const readDirectory = (r: Rights) => {
    r.subscribe.add(SD_RECORDS_SUBJECT);
    if (r.account === OPS_ACCOUNT) streams.forEach((s) => streamReadSubjects(s).forEach((x) => r.publish.add(x)));
  };
  // Replies go to the inboxes of those who may ask, and nowhere else. Not allow_responses: it
  // lets a responder publish to whatever reply subject a request names, so a caller could have
  // hd-2's answer appended to the directory stream or sent to the JetStream API as a stream
  // delete. A caller in GAMES is answered on the reply subject its service import made.
  const callersOf = (operator: string): string[] => [
    ...operators.filter((c) => busCalls(input.directory, c).some((call) => call.target === operator)),
    ...input.admins,
  ];
  const serveAs = (r: Rights, operator: string) => {
    r.subscribe.add(opSubjects(operator));
    for (const caller of callersOf(operator)) r.publish.add(accountOf(caller) === OPS_ACCOUNT ? inbox(caller) : IMPORTED_REPLIES);
  };

  for (const op of operators) {
    const r = rights(op);
    // Nothing in OPS can reach a GAMES operator, so it serves nothing; it only asks.
    if (r.account === OPS_ACCOUNT) serveAs(r, op);
    readDirectory(r);
    for (const { target, method } of busCalls(input.directory, op)) {
      // Nothing serves in GAMES (see above), so a call to a games principal would reach nobody.
      if (games.has(target)) continue;
      r.publish.add(`eps.op.${subjectToken(target)}.${method}`);
    }
  }
  for (const role of input.roles) {
    const r = rights(role.principal);
    switch (role.kind) {
      case 'sd':
        readDirectory(r);
        r.publish.add(SD_RECORDS_SUBJECT);
        // Create only, when missing (every sd instance may be the first to start); never update:
        // a stream's subjects and limits are the admin's, or sd could purge the directory through
        // its limits or widen it to capture what the bus carries.
        for (const st of streams) r.publish.add(`$JS.API.STREAM.CREATE.${st}`);
        break;
      case 'eps':
        serveAs(r, role.principal);
        readDirectory(r);
        break;
      case 'proxy':
        serveAs(r, role.operator);
        readDirectory(r);
        break;
      case 'games':
        readDirectory(r);
        buckets.forEach((b) => gamesBuckets(b).forEach((x) => bucketSubjects(x).forEach((y) => r.publish.add(y))));
        // The lobby's entries leave by message delete (a KV delete would leave a marker per game
        // forever); only in the lobby: the games bucket and every other stream keep their history.
        buckets.forEach((b) => r.publish.add(`$JS.API.STREAM.MSG.DELETE.KV_${lobbyBucket(b)}`));
        break;
    }
  }
  for (const admin of [...input.admins, ...(input.gamesAdmins ?? [])]) {
    const r = rights(admin);
    r.publish.add('>');
    r.subscribe.add('>');
  }
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, r]) => ({ name, account: r.account, publish: [...r.publish].sort(), subscribe: [...r.subscribe].sort() }));
}

/** NATS subject matching: `*` is one token, `>` the rest (one token or more). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** Whether `principal` may publish to (or subscribe to) `subject`, as nats-server decides. */
export function mayPublish(principal: BusPrincipal | undefined, subject: string): boolean {
  return !!principal && principal.publish.some((p) => subjectMatches(p, subject));
}
export function maySubscribe(principal: BusPrincipal | undefined, subject: string): boolean {
  return !!principal && principal.subscribe.some((p) => covers(p, subject));
}

/** Whether every subject `sub` (which may hold wildcards) can match is matched by `pattern`. */
function covers(pattern: string, sub: string): boolean {
  const p = pattern.split('.');
  const s = sub.split('.');
  for (let i = 0; i < s.length; i++) {
    if (p[i] === undefined) return false;
    if (p[i] === '>') return true;
    if (s[i] === '>') return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
