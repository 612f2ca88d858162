import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { StateNode } from 'xstate';
import { brokeringMachine } from '../../machines/brokering.js';
import { renderMachines } from '../../src/diagrams/machine-files.js';
import { MERMAID_BANNER } from '../../src/diagrams/mermaid.js';
import { svgProblems } from '../helpers/svg-overlaps.js';

// The diagrams under docs/machines/ (and the README's copy of the brokering one) are generated
// from machines/*.ts: this regenerates them in memory and fails when the committed ones drift.

const machinesDir = fileURLToPath(new URL('../../machines/', import.meta.url));
const docsDir = fileURLToPath(new URL('../../docs/machines/', import.meta.url));
const readme = fileURLToPath(new URL('../../README.md', import.meta.url));
const fix = 'run `npm run machines` and commit docs/machines/';

describe('machine diagrams', () => {
  it('docs/machines/ holds exactly the diagrams generated from machines/*.ts', async () => {
    const generated = await renderMachines(machinesDir);
    expect(generated.size).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const [name, text] of generated) {
      const file = `docs/machines/${name}`;
      if (!existsSync(`${docsDir}${name}`)) problems.push(`${file} is missing: ${fix}`);
      else if (readFileSync(`${docsDir}${name}`, 'utf8') !== text) problems.push(`${file} is stale (the machine changed): ${fix}`);
    }
    const committed = existsSync(docsDir) ? readdirSync(docsDir).filter((f) => /\.(mmd|svg)$/.test(f)) : [];
    for (const name of committed.sort()) {
      if (!generated.has(name)) problems.push(`docs/machines/${name} belongs to no machine any more: ${fix}`);
    }
    expect(problems, problems.join('\n')).toEqual([]);
  });

  it('every label of every diagram can be read: no overlap, nothing cut off or drawn over', async () => {
    const svgs = [...(await renderMachines(machinesDir))].filter(([name]) => name.endsWith('.svg'));
    expect(svgs.length).toBeGreaterThan(0);
    const problems = svgs.flatMap(([name, text]) => svgProblems(text).map((p) => `${name}: ${p}`));
    expect(problems, problems.join('\n')).toEqual([]);
  });

  it('is byte-for-byte deterministic', async () => {
    const [first, second] = [await renderMachines(machinesDir), await renderMachines(machinesDir)];
    expect([...second]).toEqual([...first]);
  });

  it("the README's mermaid block is docs/machines/brokering.mmd without its banner", async () => {
    const generated = (await renderMachines(machinesDir)).get('brokering.mmd')!;
    const body = generated.replace(`${MERMAID_BANNER}\n`, '');
    const block = /## The brokering machine[\s\S]*?```mermaid\n([\s\S]*?)```/.exec(readFileSync(readme, 'utf8'));
    expect(block, 'README.md has no "The brokering machine" section with a ```mermaid block').not.toBeNull();
    expect(block![1], `README.md's brokering diagram is stale: ${fix}, then paste docs/machines/brokering.mmd (minus its first line) into README.md`).toBe(body);
  });

  it('the brokering diagram names every state and every event of machines/brokering.ts', async () => {
    const text = (await renderMachines(machinesDir)).get('brokering.mmd')!;
    const nodes: StateNode<any, any>[] = [];
    const walk = (node: StateNode<any, any>): void => {
      nodes.push(node);
      for (const child of Object.values(node.states)) walk(child as StateNode<any, any>);
    };
    walk(brokeringMachine.root as StateNode<any, any>);
    const states = nodes.filter((n) => n.path.length > 0).map((n) => n.key);
    const events = [...new Set(nodes.flatMap((n) => [...n.transitions.keys()]).filter((e) => !e.startsWith('xstate.')))];
    expect(states).toContain('spliced');
    expect(events.sort()).toEqual(['A_DIALED', 'B_CLOSED', 'B_DIALED', 'SHUTDOWN', 'SPLICE_ENDED']);
    const words = new Set(text.split(/[^A-Za-z0-9_]+/));
    for (const name of [...states, ...events]) expect(words, `${name} is missing from brokering.mmd`).toContain(name);
    // Named delays, invokes and guards show up by name too.
    for (const label of ['after bDialTimeout', 'after aDialTimeout', 'notifyB.done [isAccepted]', 'notifyB.error', 'confirmToA.done', 'outcome peerClosedEarly']) {
      expect(text).toContain(label);
    }
  });
});
