import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readWindows, type ProfileWindow } from './cpuprofile-windows.js';

// Self and total time per function, and self time per package, from the .cpuprofile files of a
// BENCH_CPU_PROF run of bench/brokering.ts, one block per role (roles.json maps pid -> role;
// the concurrent mode's requester processes, one per round, are summed as one role). Only
// samples inside the run's timed windows count (windows.json: `serial`, the brokerings one at a
// time, and `concurrent`, the requesters' rounds), so start-up and warm-up stay out, and the
// time is divided by the brokerings completed in those windows.
//
//   node dist/bench/cpuprofile-top.js <dir> [top=25] [window=serial|concurrent|all]

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function bucketOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const d = /dist\/(src|machines)\/([^/]+)/.exec(url);
  if (d) return `${d[1]}/${d[2]}`;
  return url;
}

interface Tally {
  busyUs: number;
  self: Map<string, number>;
  total: Map<string, number>;
  buckets: Map<string, number>;
  pids: string[];
}

const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);

function tallyProfile(p: Profile, windows: ProfileWindow[] | undefined, into: Tally): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n: ProfileNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    return `${functionName || '(anonymous)'} ${url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${lineNumber + 1}`;
  };
  let t = p.startTime;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    t += us;
    if (windows && !windows.some((w) => t >= w.startUs && t <= w.endUs)) return;
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') return;
    into.busyUs += us;
    add(into.self, keyOf(n), us);
    add(into.buckets, bucketOf(n.callFrame.url, n.callFrame.functionName), us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf(byId.get(cur)!);
      if (seen.has(k)) continue;
      seen.add(k);
      add(into.total, k, us);
    }
  });
}

const dir = process.argv[2]!;
const top = Number(process.argv[3] ?? 25);
const which = process.argv[4] ?? 'serial';
const roles = JSON.parse(readFileSync(join(dir, 'roles.json'), 'utf8')) as Record<string, string>;
const allWindows = readWindows(dir);
const windows = which === 'all' ? undefined : allWindows[which];
const count = windows?.reduce((n, w) => n + w.count, 0) ?? 0;
if (which !== 'all' && !windows) console.log(`no "${which}" window in ${dir}/windows.json: counting the whole profiles`);
console.log(`window: ${which}${count ? `, ${count} brokerings` : ''}`);
const tallies = new Map<string, Tally>();
for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
  const pid = f.split('.')[3]!;
  const role = roles[pid];
  if (!role) continue;
  const tally: Tally = tallies.get(role) ?? { busyUs: 0, self: new Map(), total: new Map(), buckets: new Map(), pids: [] };
  tallies.set(role, tally);
  tally.pids.push(pid);
  tallyProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile, windows, tally);
}
const ms = (us: number) => (us / 1000).toFixed(0);
const share = (v: number, t: Tally) => `${((100 * v) / t.busyUs).toFixed(1).padStart(5)}%  ${ms(v).padStart(6)} ms`;
for (const [role, t] of tallies) {
  if (!t.busyUs) continue;
  console.log(`\n== ${role} (pid ${t.pids.join(', ')}): ${ms(t.busyUs)} ms busy${count ? `, ${(t.busyUs / 1000 / count).toFixed(2)} ms per brokering` : ''}`);
  console.log('  self time by package/module:');
  for (const [k, v] of [...t.buckets].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`    ${share(v, t)}  ${k}`);
  console.log('  top self time:');
  for (const [k, v] of [...t.self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${share(v, t)}  ${k}`);
  console.log('  top total time (the function and what it called):');
  for (const [k, v] of [...t.total].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${share(v, t)}  ${k}`);
}
