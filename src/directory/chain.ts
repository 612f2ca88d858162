import { fingerprintOf } from '../core/tls-material.js';
import { recordHash } from './records.js';
import { GENESIS_PARENT, type Channel, type ChainedRecord, type DirectoryEntry, type RecordData, type SignedRecord } from './types.js';

// The chain as data: no I/O, no clocks, no signature checks (records.ts does those). The sd and
// every DirectoryClient run the same code, so they build identical entries from identical records.

export interface Tip {
  /** Number of records in the chain; equals the JetStream sequence of the last one. */
  seq: number;
  /** Hash of the last record, which the next record must name as its parent. */
  hash: string;
}

export const EMPTY_TIP: Tip = { seq: 0, hash: GENESIS_PARENT };

export type ApplyStatus =
  | { ok: true; chained: ChainedRecord }
  | { ok: false; code: 'STALE_PARENT' | 'INVALID_RECORD'; detail: string };

export class DirectoryState {
  private readonly byName = new Map<string, DirectoryEntry>();
  private readonly groups = new Set<string>();
  private readonly chain: ChainedRecord[] = [];

  tip(): Tip {
    const last = this.chain.at(-1);
    return last ? { seq: last.seq, hash: last.hash } : { ...EMPTY_TIP };
  }

  entry(name: string): DirectoryEntry | undefined {
    return this.byName.get(name);
  }

  entries(): ReadonlyMap<string, DirectoryEntry> {
    return this.byName;
  }

  hasGroup(name: string): boolean {
    return this.groups.has(name);
  }

  /** Records with a sequence above `after`, in order. */
  records(after = 0): ChainedRecord[] {
    return this.chain.slice(Math.max(0, after));
  }

  /** A copy to try a batch on, so that a batch is checked whole before any of it is persisted. */
  clone(): DirectoryState {
    const copy = new DirectoryState();
    for (const [k, v] of this.byName) copy.byName.set(k, structuredClone(v));
    for (const g of this.groups) copy.groups.add(g);
    copy.chain.push(...this.chain);
    return copy;
  }

  /** Appends a record that extends the tip (the sd's submit path and a replayed stream message). */
  append(record: SignedRecord): ApplyStatus {
    const tip = this.tip();
    if (record.parent !== tip.hash) {
      return { ok: false, code: 'STALE_PARENT', detail: `expected parent ${tip.hash} (tip seq ${tip.seq}), got ${record.parent}` };
    }
    const problem = this.problemWith(record.data);
    if (problem) return { ok: false, code: 'INVALID_RECORD', detail: problem };
    this.applyData(record.data);
    const chained: ChainedRecord = { seq: tip.seq + 1, hash: recordHash(record), record };
    this.chain.push(chained);
    return { ok: true, chained };
  }

  /** Applies a record whose position is already known (from the sd or the stream), checking it fits. */
  applyChained(c: ChainedRecord): ApplyStatus {
    const tip = this.tip();
    if (c.seq !== tip.seq + 1) {
      return { ok: false, code: 'STALE_PARENT', detail: `expected seq ${tip.seq + 1}, got ${c.seq}` };
    }
    const hash = recordHash(c.record);
    if (c.hash !== hash) return { ok: false, code: 'INVALID_RECORD', detail: `record ${c.seq} claims hash ${c.hash} but hashes to ${hash}` };
    return this.append(c.record);
  }

  /** Why `data` cannot apply to the current entries, or undefined when it can. */
  problemWith(data: RecordData): string | undefined {
    const needOperator = (name: string, role: string) => (this.byName.has(name) ? undefined : `${role} ${name} is not a known operator`);
    const needGroup = (name: string, role: string) => (this.groups.has(name) ? undefined : `${role} ${name} is not a declared group`);
    switch (data.kind) {
      case 'operator':
        try {
          fingerprintOf(data.certificate);
        } catch (err) {
          return `operator ${data.name}: certificate cannot be parsed (${(err as Error).message})`;
        }
        return undefined;
      case 'channel': {
        const c = data.channel;
        if (!c.address && !c.proxy) return `channel ${c.type} of ${data.operator} has neither an address nor a proxy`;
        return needOperator(data.operator, 'channel operator') ?? (c.proxy ? needOperator(c.proxy, 'channel proxy') : undefined);
      }
      case 'group':
        return this.groups.has(data.name) ? `group ${data.name} is already declared` : undefined;
      case 'member':
        return (
          needGroup(data.group, 'member group') ??
          needOperator(data.operator, 'member operator') ??
          (this.byName.get(data.operator)!.groups.includes(data.group) ? `${data.operator} is already a member of ${data.group}` : undefined)
        );
      case 'service':
        return (
          needOperator(data.operator, 'service operator') ??
          data.permissions.map((p) => needGroup(p.group, `service ${data.name} permission group`)).find(Boolean)
        );
    }
  }

  private applyData(data: RecordData): void {
    switch (data.kind) {
      case 'operator': {
        // A second operator record for the same name rotates its certificate and keeps the rest.
        const existing = this.byName.get(data.name);
        const fingerprint = fingerprintOf(data.certificate);
        if (existing) Object.assign(existing, { certificate: data.certificate, fingerprint });
        else this.byName.set(data.name, { name: data.name, certificate: data.certificate, fingerprint, channels: [], groups: [], services: [] });
        return;
      }
      case 'channel': {
        // One channel per type: a later record replaces it, which is how an address changes.
        const e = this.byName.get(data.operator)!;
        e.channels = [...e.channels.filter((c) => c.type !== data.channel.type), data.channel];
        return;
      }
      case 'group':
        this.groups.add(data.name);
        return;
      case 'member':
        this.byName.get(data.operator)!.groups.push(data.group);
        return;
      case 'service': {
        const e = this.byName.get(data.operator)!;
        const service = { name: data.name, permissions: data.permissions.map((p) => ({ group: p.group, methods: [...p.methods] })) };
        e.services = [...e.services.filter((s) => s.name !== data.name), service];
        return;
      }
    }
  }
}

/**
 * True when `target` offers a service granting one of `caller`'s groups `method` (or '*').
 * Unknown callers or targets are never permitted.
 */
export function isPermitted(entries: ReadonlyMap<string, DirectoryEntry>, caller: string, target: string, method: string): boolean {
  const from = entries.get(caller);
  const to = entries.get(target);
  if (!from || !to) return false;
  return to.services.some((s) =>
    s.permissions.some((p) => from.groups.includes(p.group) && (p.methods.includes(method) || p.methods.includes('*'))),
  );
}

/** The proxy operator through which `entry` must be reached on that channel, if any. */
export function proxyFor(entry: DirectoryEntry, channelType: Channel['type'] = 'grpc_server'): string | undefined {
  return entry.channels.find((c) => c.type === channelType)?.proxy;
}
