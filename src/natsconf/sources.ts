import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { busPrincipalOf } from '../core/nats.js';
import { readRecordFiles } from '../directory/record-files.js';
import { loadSettings } from '../settings/load.js';
import { gamesSettingsSchema } from '../settings/games-schema.js';
import { epsSettingsSchema, proxySettingsSchema, sdSettingsSchema } from '../settings/schemas.js';
import type { BusPolicyInput, RoleBinding } from './policy.js';

// Reads the policy's inputs from a settings tree (settings/dev): the directory's record files,
// and each role folder, whose settings file says what kind of process it is and whose
// certificate says which principal it is on the bus.

/** The settings file that names a role's process kind (as the CLIs' settings variables do). */
const KINDS = { 'sd.yml': 'sd', 'eps.yml': 'eps', 'proxy.yml': 'proxy', 'games.yml': 'games' } as const;

function load<S extends z.ZodType>(folder: string, schema: S): z.infer<S> {
  const env = { ROLE: folder };
  return loadSettings(['ROLE'], schema, env);
}

export function readRoleBinding(folder: string): RoleBinding {
  const file = readdirSync(folder).find((n): n is keyof typeof KINDS => n in KINDS);
  if (!file) throw new Error(`${folder}: no ${Object.keys(KINDS).join(', ')} in this role folder`);
  const principalOf = (cert: string) => busPrincipalOf(readFileSync(cert));
  switch (KINDS[file]) {
    case 'sd': {
      const s = load(folder, sdSettingsSchema);
      return { kind: 'sd', principal: principalOf(s.tls.cert), stream: s.stream };
    }
    case 'eps': {
      const s = load(folder, epsSettingsSchema);
      return { kind: 'eps', principal: principalOf(s.tls.cert) };
    }
    case 'proxy': {
      const s = load(folder, proxySettingsSchema);
      return { kind: 'proxy', principal: principalOf(s.tls.cert), operator: s.operator };
    }
    case 'games': {
      const s = load(folder, gamesSettingsSchema);
      return { kind: 'games', principal: principalOf(s.tls.cert), bucket: s.games.bucket };
    }
  }
}

/** The inputs under a settings tree: `<root>/directory/*.yml` and `<root>/roles/<role>/`. */
export function readPolicyInput(root: string, admins: string[], gamesAdmins: string[] = []): BusPolicyInput {
  const rolesDir = join(root, 'roles');
  const roles = existsSync(rolesDir)
    ? readdirSync(rolesDir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
        .map((name) => readRoleBinding(join(rolesDir, name)))
    : [];
  return { directory: readRecordFiles(join(root, 'directory')), roles, admins, gamesAdmins };
}
