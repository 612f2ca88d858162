import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// Self time per function and per package from the .cpuprofile files of a BENCH_CPU_PROF run of
// bench/brokering.ts, one block per role (roles.json maps pid -> role).
//
//   node dist/bench/cpuprofile-top.js <dir> [top=25] [perBrokering count]

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
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

const dir = process.argv[2]!;
const top = Number(process.argv[3] ?? 25);
const per = Number(process.argv[4] ?? 0);
const roles = JSON.parse(readFileSync(join(dir, 'roles.json'), 'utf8')) as Record<string, string>;
for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
  const pid = f.split('.')[3]!;
  const role = roles[pid];
  if (!role) continue;
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const buckets = new Map<string, number>();
  let total = 0;
  let busy = 0;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    total += us;
    if (functionName === '(idle)') return;
    busy += us;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + us);
    const b = bucketOf(url, functionName);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
  });
  const ms = (us: number) => (us / 1000).toFixed(0);
  console.log(`\n== ${role} (pid ${pid}): ${ms(busy)} ms busy of ${ms(total)} ms${per ? `, ${(busy / 1000 / per).toFixed(2)} ms per brokering` : ''}`);
  console.log('  by package/module:');
  for (const [k, v] of [...buckets].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`    ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${ms(v).padStart(6)} ms  ${k}`);
  console.log('  top self time:');
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${ms(v).padStart(6)} ms  ${k}`);
}
