import { readFileSync } from 'node:fs';

// Self size and count per kind of object in a .heapsnapshot (node:v8 writeHeapSnapshot), largest
// first; with a session count, per session too. Written for the relay memory bench
// (BENCH_MEMORY_HEAPSNAPSHOT=<dir>): --base, a run with fewer sessions, is subtracted, so what
// is left is what the extra sessions hold.
//
//   node dist/bench/heap-top.js <file.heapsnapshot> [--base other.heapsnapshot] [--sessions n] [--top 30]

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const args = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : args.splice(i, 2)[1];
};
const base = option('base');
const sessionsArg = option('sessions');
const top = Number(option('top') ?? 30);
const file = args[0];
if (!file) throw new Error('usage: heap-top <file.heapsnapshot> [--base other.heapsnapshot] [--sessions n] [--top n]');
const sessions = sessionsArg === undefined ? undefined : Number(sessionsArg);

type Kinds = Map<string, { count: number; bytes: number }>;

function kinds(path: string): Kinds {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [TYPE, NAME, SIZE] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const byKind: Kinds = new Map();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + TYPE]!]!;
    // Strings and code are grouped by type: their names are their contents.
    const name = ['string', 'concatenated string', 'sliced string', 'code', 'number'].includes(type) ? '' : snap.strings[snap.nodes[i + NAME]!]!.slice(0, 60);
    const key = `${type}${name ? ` ${name}` : ''}`;
    const k = byKind.get(key) ?? { count: 0, bytes: 0 };
    k.count++;
    k.bytes += snap.nodes[i + SIZE]!;
    byKind.set(key, k);
  }
  return byKind;
}

const byKind = kinds(file);
if (base) {
  for (const [key, b] of kinds(base)) {
    const k = byKind.get(key) ?? { count: 0, bytes: 0 };
    byKind.set(key, { count: k.count - b.count, bytes: k.bytes - b.bytes });
  }
}
let total = 0;
for (const { bytes } of byKind.values()) total += bytes;
const per = (n: number): string => (sessions ? `  ${(n / sessions).toFixed(1).padStart(8)} per session` : '');
console.log(`${file}${base ? ` less ${base}` : ''}: ${(total / 2 ** 20).toFixed(1)} MiB${sessions ? `; ${(total / sessions / 1024).toFixed(2)} KiB per session` : ''}`);
for (const [key, { count, bytes }] of [...byKind].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, top)) {
  console.log(`${(bytes / 1024).toFixed(0).padStart(9)} KiB ${String(count).padStart(8)}x  ${key}${per(bytes)}${sessions ? ` (${(count / sessions).toFixed(2)}x)` : ''}`);
}
