import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { InspectionEvent } from 'xstate';
import { start, stats } from './brokering-latency.js';
import { joinAsA } from './join-as-a.js';

// Where a serial brokering's time goes, as A sees it: this process speaks as hd-1 (its own bus
// connection, hd-1's settings) to a real stack (proxy, hd-2, sd on the generated TLS bus) and
// timestamps each state A's peer-connection machine enters through xstate's inspection hook:
// requesting (the bus round trip to the proxy, which covers the forward to B and B's dial),
// dialing (A's TCP connect and preamble), securing (end-to-end TLS and HTTP/2 through the splice),
// open, then the call itself. One channel per round, closed after its call.
//
//   node dist/bench/brokering-phases.js [rounds]

const PHASES = ['resolving', 'requesting', 'dialing', 'securing', 'open'] as const;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 200);
  const target = await start('.');
  try {
    const stack = target.stack as unknown as { roleFolders(role: string): string; opts: { natsUrl: string } };
    process.env['EPS_SETTINGS'] = stack.roleFolders('hd-1');
    process.env['NATS_URL'] = stack.opts.natsUrl;
    const joined = await joinAsA('.', 'bench-phases');
    let marks: Array<[string, number]> = [];
    const inspect = (e: InspectionEvent) => {
      if (e.type !== '@xstate.snapshot') return;
      const value = (e.snapshot as { value?: unknown }).value;
      if (typeof value === 'string' && (!marks.length || marks.at(-1)![0] !== value)) marks.push([value, performance.now()]);
    };
    const channels = joined.channels({ inspect });
    const samples: Record<string, number[]> = Object.fromEntries([...PHASES, 'call', 'total'].map((p) => [p, []]));
    const once = async (record: boolean) => {
      marks = [];
      const t0 = performance.now();
      await channels.call('hd-2', '_ping', {}, randomUUID());
      const t1 = performance.now();
      channels.close();
      if (!record) return;
      const at = new Map(marks);
      const openAt = at.get('open')!;
      PHASES.forEach((p, i) => {
        const from = at.get(p);
        const to = i + 1 < PHASES.length ? at.get(PHASES[i + 1]!) : t1;
        if (from !== undefined && to !== undefined && p !== 'open') samples[p]!.push(to - from);
      });
      samples['call']!.push(t1 - openAt);
      samples['total']!.push(t1 - t0);
    };
    for (let i = 0; i < 20; i++) await once(false);
    for (let i = 0; i < rounds; i++) {
      await sleep(20);
      await once(true);
    }
    // The proxy's side, from its inspector (on in the demo's proxy role): when each session event
    // came, after the session opened (Date.now's whole milliseconds, so medians of many).
    const metricsPort = (target.stack as unknown as { opts: { ports: { metrics: number } } }).opts.ports.metrics;
    const base = `http://127.0.0.1:${metricsPort}/inspect/api/sessions`;
    const { sessions: list } = (await (await fetch(base)).json()) as { sessions: Array<{ id: string }> };
    const proxySide = new Map<string, number[]>();
    for (const { id } of list.slice(0, rounds)) {
      const detail = (await (await fetch(`${base}/${encodeURIComponent(id)}`)).json()) as { summary: { startedAt: number }; timeline: Array<{ at: number; event: string; to: string }> };
      for (const e of detail.timeline) {
        const key = `${e.event} -> ${e.to}`;
        proxySide.set(key, [...(proxySide.get(key) ?? []), e.at - detail.summary.startedAt]);
      }
    }
    console.log(`the proxy's session events after the session opened, ${Math.min(rounds, list.length)} sessions (ms, whole-ms clock)`);
    for (const [k, xs] of proxySide) if (xs.length > rounds / 2) console.log(`  ${k.padEnd(50)} p50 ${stats(xs).p50}  p90 ${stats(xs).p90}`);
    console.log(`A's phases of a brokered channel + one call, ${rounds} rounds (ms)`);
    for (const [p, xs] of Object.entries(samples)) if (xs.length) console.log(`  ${p.padEnd(11)} p50 ${stats(xs).p50}  p90 ${stats(xs).p90}  p99 ${stats(xs).p99}`);
  } finally {
    await target.stack.stop().catch(() => {});
    target.nats.kill('SIGTERM');
    rmSync(target.storeDir, { recursive: true, force: true });
  }
}

main().then(
  // The bus connection would keep reconnecting to the stopped nats-server.
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
