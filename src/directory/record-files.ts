import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { recordDataSchema, type RecordData } from './types.js';

// The directory's source files (settings/dev/directory/*.yml): what sd-setup signs and submits,
// and what the NATS configuration generator derives the bus permissions from.

/** `$DIR` is the folder of the file, as in settings files. */
function expandDir(value: unknown, dir: string): unknown {
  if (typeof value === 'string') return value.replaceAll('$DIR', dir);
  if (Array.isArray(value)) return value.map((v) => expandDir(v, dir));
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandDir(v, dir)]));
  return value;
}

/** Every record of `dir`/*.yml in file-name order, checked; operator certificates read into PEM. */
export function readRecordFiles(dir: string): RecordData[] {
  const files = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  return files.flatMap((name) => {
    const file = join(dir, name);
    const doc: unknown = parseYaml(readFileSync(file, 'utf8'));
    if (doc === null || doc === undefined) return [];
    if (!Array.isArray(doc)) throw new Error(`${file}: expected a list of records`);
    return doc.map((item, i) => {
      const expanded = expandDir(item, resolve(dir)) as Record<string, unknown> | null;
      if (expanded && expanded.kind === 'operator' && typeof expanded.certificate === 'string' && !expanded.certificate.includes('BEGIN CERTIFICATE')) {
        try {
          expanded.certificate = readFileSync(expanded.certificate, 'utf8');
        } catch (err) {
          throw new Error(`${file}: record ${i}: cannot read certificate ${expanded.certificate}: ${(err as Error).message}`);
        }
      }
      const checked = recordDataSchema.safeParse(expanded);
      if (!checked.success) {
        throw new Error(`${file}: record ${i}: ${checked.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
      }
      return checked.data;
    });
  });
}

