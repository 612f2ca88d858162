import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderMachines } from './machine-files.js';

// `npm run machines`: renders every machine in machines/ to docs/machines/<id>.mmd and .svg.
// Runs from dist/src/diagrams/, next to the compiled machines in dist/machines/; writes into the
// source tree's docs/machines/, which is committed.

const machinesDir = fileURLToPath(new URL('../../machines/', import.meta.url));
const docsDir = fileURLToPath(new URL('../../../docs/machines/', import.meta.url));

const files = await renderMachines(machinesDir);
mkdirSync(docsDir, { recursive: true });
// A machine removed or renamed leaves no stale diagram behind.
for (const old of readdirSync(docsDir)) {
  if ((old.endsWith('.mmd') || old.endsWith('.svg')) && !files.has(old)) rmSync(`${docsDir}${old}`);
}
for (const [name, text] of files) writeFileSync(`${docsDir}${name}`, text);
process.stdout.write(`docs/machines: ${[...files.keys()].join(', ')}\n`);
