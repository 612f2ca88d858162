import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

/** A settings problem, naming the file and the key so an operator can fix it without guessing. */
export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

type Tree = Record<string, unknown>;

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads every `*.yml` in each role folder (in order, files sorted by name) and deep-merges them:
 * later values win, objects merge key by key, arrays and scalars are replaced. `$DIR` in a string
 * becomes the absolute folder of the file it appears in, so a role can name its own certificates.
 * Returns the merged tree and, for every leaf path, the file that set it (for error messages).
 */
export function readRoleFolders(folders: string[]): { tree: Tree; origin: Map<string, string> } {
  const tree: Tree = {};
  const origin = new Map<string, string>();
  for (const folder of folders) {
    const dir = resolve(folder);
    let names: string[];
    try {
      if (!statSync(dir).isDirectory()) throw new Error('not a directory');
      names = readdirSync(dir).filter((n) => n.endsWith('.yml') || n.endsWith('.yaml')).sort();
    } catch (err) {
      throw new SettingsError(`settings folder ${folder}: cannot be read (${(err as Error).message})`);
    }
    for (const name of names) {
      const file = join(dir, name);
      let doc: unknown;
      try {
        doc = parseYaml(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new SettingsError(`${file}: invalid YAML: ${(err as Error).message}`);
      }
      if (doc === null || doc === undefined) continue;
      if (!isTree(doc)) throw new SettingsError(`${file}: the top level must be a mapping of keys`);
      mergeInto(tree, expandDir(doc, dir) as Tree, file, '', origin);
    }
  }
  return { tree, origin };
}

function expandDir(value: unknown, dir: string): unknown {
  if (typeof value === 'string') return value.replaceAll('$DIR', dir);
  if (Array.isArray(value)) return value.map((v) => expandDir(v, dir));
  if (isTree(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandDir(v, dir)]));
  return value;
}

function mergeInto(target: Tree, source: Tree, file: string, prefix: string, origin: Map<string, string>): void {
  for (const [key, value] of Object.entries(source)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const existing = target[key];
    if (isTree(value) && isTree(existing)) {
      mergeInto(existing, value, file, path, origin);
    } else {
      target[key] = isTree(value) ? structuredClone(value) : value;
      recordOrigin(value, path, file, origin);
    }
  }
}

function recordOrigin(value: unknown, path: string, file: string, origin: Map<string, string>): void {
  origin.set(path, file);
  if (isTree(value)) for (const [k, v] of Object.entries(value)) recordOrigin(v, `${path}.${k}`, file, origin);
}

/** Names the file behind a key path, or the nearest ancestor that was set, or the folders. */
function fileFor(path: string, origin: Map<string, string>, folders: string[]): string {
  for (let p = path; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
    const f = origin.get(p);
    if (f) return f;
  }
  return `settings in ${folders.join(':')}`;
}

/** zod's words, except for the commonest mistake: a required key that is not there at all. */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) return `missing: required (${issue.expected})`;
  return issue.message;
}

/**
 * Loads settings for a process: the role folders come from the first of `envVars` that is set
 * (colon-separated), are merged, then validated by `schema`. Every problem is reported at once.
 */
export function loadSettings<S extends z.ZodType>(
  envVars: string[],
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> & { roleFolders: string[] } {
  const envVar = envVars.find((v) => env[v]);
  if (!envVar) {
    throw new SettingsError(`no settings: set ${envVars.join(' or ')} to one or more role folders (colon-separated)`);
  }
  const folders = env[envVar]!.split(':').filter(Boolean);
  const { tree, origin } = readRoleFolders(folders);
  if (origin.size === 0) {
    throw new SettingsError(`no settings in ${folders.join(':')} (from ${envVar}): a role folder holds *.yml files, e.g. settings/dev/roles/<role>`);
  }
  const result = schema.safeParse(tree);
  if (!result.success) {
    const lines = result.error.issues.flatMap((issue) => {
      const base = issue.path.join('.');
      // An unknown key is reported once per key, at the key, so its file can be named.
      const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => (base ? `${base}.${k}` : k)) : [base];
      return keys.map((key) => `${fileFor(key, origin, folders)}: ${key || '(top level)'}: ${describeIssue(issue)}`);
    });
    throw new SettingsError(`invalid settings from ${envVar}=${env[envVar]}:\n  ${lines.join('\n  ')}`);
  }
  return { ...(result.data as object), roleFolders: folders } as z.infer<S> & { roleFolders: string[] };
}
