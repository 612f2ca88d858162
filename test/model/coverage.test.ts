import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AnyStateMachine } from 'xstate';
import { coveredSteps } from './cases.js';
import { coverageOf } from './derive.js';
import { MODELS } from './paths.js';

// Coverage that cannot rot: every machine in machines/ (found by listing the directory, so a new
// file is included without anyone remembering to), every state and every transition candidate
// of it (delays and invoke done/error included), must be taken by a case the model tests run.

/**
 * Transitions the I/O layer cannot make the machine take, with the reason. Pinned here on purpose:
 * a driver declaring `cannot`/`intercepted` for something new makes this list (and the test) fail
 * until someone writes the reason down in both places.
 */
const KNOWN_UNREACHABLE: Record<string, Record<string, string>> = {
  game: {
    'open --after.hostPollTimeout--> expired':
      'GameService keeps no actor between requests, so no timer runs: a silent host expires by the hostPollTimedOut guard on the clock each request and the sweep show the machine (CLOCK_TICKED)',
  },
  peerConnection: {
    'securing --CONNECTION_LOST--> failed': 'openChannel subscribes to the connection only after TLS is up; earlier losses fail openChannel',
  },
};

const machinesDir = fileURLToPath(new URL('../../machines/', import.meta.url));

const isMachine = (v: unknown): v is AnyStateMachine =>
  typeof v === 'object' && v !== null && 'root' in v && 'provide' in v && 'transition' in v && 'getInitialSnapshot' in v;

async function machinesOnDisk(): Promise<{ file: string; machine: AnyStateMachine }[]> {
  const found: { file: string; machine: AnyStateMachine }[] = [];
  for (const file of readdirSync(machinesDir).filter((f) => f.endsWith('.ts')).sort()) {
    const mod = (await import(/* @vite-ignore */ pathToFileURL(`${machinesDir}${file}`).href)) as Record<string, unknown>;
    for (const value of Object.values(mod)) if (isMachine(value)) found.push({ file: `machines/${file}`, machine: value });
  }
  return found;
}

describe('model coverage', () => {
  it('coverage - every machine in machines/ has model paths', async () => {
    const onDisk = await machinesOnDisk();
    expect(onDisk.length).toBeGreaterThan(0);
    const missing = onDisk.filter(({ machine }) => !MODELS[machine.id]).map(({ file, machine }) => `${machine.id} (${file})`);
    expect(missing, 'machines with no generated model paths (add drivers in test/model/paths.ts)').toEqual([]);
  });

  it('coverage - every state and transition is taken by a case the model tests run', async () => {
    const report: string[] = [];
    const problems: string[] = [];
    for (const { file, machine } of await machinesOnDisk()) {
      const m = MODELS[machine.id];
      if (!m) continue; // reported by the test above
      // The generated model must come from this very machine, not a stale copy of it.
      expect(m.machine, `${file}`).toBe(machine);
      const cov = coverageOf(m.model, coveredSteps(m));
      const known = KNOWN_UNREACHABLE[machine.id] ?? {};
      const unexplained = cov.transitions.missing.filter((t) => !(t in known));
      const stale = Object.keys(known).filter((t) => !cov.transitions.missing.includes(t));
      for (const s of cov.states.missing) problems.push(`${machine.id}: state ${s} is not reached by any model case`);
      for (const t of unexplained) problems.push(`${machine.id}: transition ${t} is not taken by any model case`);
      for (const t of stale) problems.push(`${machine.id}: KNOWN_UNREACHABLE lists ${t}, which is now covered or gone`);
      const total = m.model.transitions.length;
      report.push(
        `${machine.id}: states ${cov.states.covered.length}/${m.model.states.length}, transitions ${cov.transitions.covered.length}/${total}` +
          ` (${Object.keys(known).length} unreachable from the I/O layer), ${m.cases.filter((c) => !c.skip).length} cases run`,
      );
    }
    console.log(report.join('\n'));
    expect(problems).toEqual([]);
  });
});
