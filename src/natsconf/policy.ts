import { inboxPrefixOf, subjectToken } from '../core/nats.js';
import { SD_RECORDS_SUBJECT } from '../directory/client.js';
import type { RecordData } from '../directory/types.js';

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

export interface BusPolicyInput {
  /** The directory's records, in order: operators, groups, members and service permissions. */
  directory: RecordData[];
  roles: RoleBinding[];
  /** Principals with every right (operator tools, test setup): the only ones who may delete. */
  admins: string[];
  /** More directory streams and games buckets than the roles name (test servers use their own
   *  names): readers read, sd principals manage and games principals use each of them. */
  extraStreams?: string[];
  extraBuckets?: string[];
}

export interface BusPrincipal {
  /** The user nats-server maps a certificate to (its DNS SAN, see busPrincipalOf). */
  name: string;
  publish: string[];
  subscribe: string[];
}

export const opSubjects = (operator: string): string => `eps.op.${subjectToken(operator)}.>`;

/**
 * Reading one stream with the consumers nats.js makes (ordered and pull): stream info, direct
 * gets, creating, asking and dropping consumers of that stream, acks and flow control. Nothing
 * that changes the stream: no create, update, purge, delete, and no message delete.
 */
export function streamReadSubjects(stream: string): string[] {
  return [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
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
  ];
}

/** What a games server does with its KV bucket: create it, read, write and watch its keys. */
export function bucketSubjects(bucket: string): string[] {
  const stream = `KV_${bucket}`;
  return [...streamReadSubjects(stream), `$JS.API.STREAM.CREATE.${stream}`, `$JS.API.STREAM.UPDATE.${stream}`, `$KV.${bucket}.>`];
}

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

class Rights {
  readonly publish = new Set<string>();
  readonly subscribe = new Set<string>();
}

/** The principals and their rights, least privilege: anything not listed is refused. */
export function busPolicy(input: BusPolicyInput): BusPrincipal[] {
  const operators = input.directory.flatMap((r) => (r.kind === 'operator' ? [r.name] : []));
  const streams = [...new Set([...input.roles.flatMap((r) => (r.kind === 'sd' ? [r.stream] : [])), ...(input.extraStreams ?? [])])];
  const buckets = [...new Set([...input.roles.flatMap((r) => (r.kind === 'games' ? [r.bucket] : [])), ...(input.extraBuckets ?? [])])];
  const inbox = (principal: string) => `${inboxPrefixOf(principal)}.>`;
  const byName = new Map<string, Rights>();
  const rights = (name: string): Rights => {
    let r = byName.get(name);
    if (!r) {
      r = new Rights();
      // Every principal reads its own replies, and only its own.
      r.subscribe.add(inbox(name));
      byName.set(name, r);
    }
    return r;
  };
  const readDirectory = (r: Rights) => streams.forEach((s) => streamReadSubjects(s).forEach((x) => r.publish.add(x)));
  // Replies go to the inboxes of those who may ask, and nowhere else. Not allow_responses: it
  // lets a responder publish to whatever reply subject a request names, so a caller could have
  // hd-2's answer appended to the directory stream, written into the games bucket, or sent to
  // the JetStream API as a stream delete.
  const callersOf = (operator: string): string[] => [
    ...operators.filter((c) => permittedCalls(input.directory, c).some((call) => call.target === operator)),
    ...input.admins,
  ];
  const serveAs = (r: Rights, operator: string) => {
    r.subscribe.add(opSubjects(operator));
    for (const caller of callersOf(operator)) r.publish.add(inbox(caller));
  };

  for (const op of operators) {
    const r = rights(op);
    serveAs(r, op);
    readDirectory(r);
    for (const { target, method } of permittedCalls(input.directory, op)) r.publish.add(`eps.op.${subjectToken(target)}.${method}`);
  }
  for (const role of input.roles) {
    const r = rights(role.principal);
    switch (role.kind) {
      case 'sd':
        readDirectory(r);
        r.publish.add(SD_RECORDS_SUBJECT);
        // Every directory stream, not only its own: any sd instance may be the first to start.
        for (const st of streams) {
          r.publish.add(`$JS.API.STREAM.CREATE.${st}`);
          r.publish.add(`$JS.API.STREAM.UPDATE.${st}`);
        }
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
        buckets.forEach((b) => bucketSubjects(b).forEach((x) => r.publish.add(x)));
        break;
    }
  }
  for (const admin of input.admins) {
    const r = rights(admin);
    r.publish.add('>');
    r.subscribe.add('>');
  }
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, r]) => ({ name, publish: [...r.publish].sort(), subscribe: [...r.subscribe].sort() }));
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
