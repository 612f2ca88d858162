import { readdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { machineGraph } from './machine-graph.js';
import { mermaid } from './mermaid.js';
import { svg } from './svg.js';

// Finds every machine exported by every module in machines/ and renders each one to the files
// committed under docs/machines/. Used by `npm run machines` (from dist/, on the compiled .js)
// and by the staleness test (from the .ts sources).

export interface FoundMachine {
  /** The module's file name: `brokering.ts`. */
  file: string;
  exportName: string;
  machine: AnyStateMachine;
}

function isMachine(value: unknown): value is AnyStateMachine {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { id?: unknown }).id === 'string' &&
    typeof (value as { root?: unknown }).root === 'object' &&
    typeof (value as { transition?: unknown }).transition === 'function' &&
    typeof (value as { getInitialSnapshot?: unknown }).getInitialSnapshot === 'function'
  );
}

/** Machines exported by the `.ts` (or `.js`) modules of `dir`, sorted by file then export name. */
export async function findMachines(dir: string): Promise<FoundMachine[]> {
  const files = readdirSync(dir)
    .filter((f) => (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.endsWith('.js'))
    .sort();
  const found: FoundMachine[] = [];
  const ids = new Map<string, string>();
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    for (const exportName of Object.keys(mod).sort()) {
      const machine = mod[exportName];
      if (!isMachine(machine)) continue;
      const where = `${basename(file, extname(file))}.${exportName}`;
      const clash = ids.get(machine.id);
      if (clash) throw new Error(`machine id "${machine.id}" is used by both ${clash} and ${where}`);
      ids.set(machine.id, where);
      found.push({ file, exportName, machine });
    }
  }
  return found;
}

/** Every generated file, by its name under docs/machines/ (`brokering.mmd`, `brokering.svg`). */
export async function renderMachines(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { machine } of await findMachines(dir)) {
    const graph = machineGraph(machine);
    out.set(`${machine.id}.mmd`, mermaid(graph));
    out.set(`${machine.id}.svg`, await svg(graph));
  }
  return out;
}
