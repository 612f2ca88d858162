#!/usr/bin/env node
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT, parseCommandLine, usageError } from './command-line.js';
import { packageRoot } from '../core/package-root.js';
import { DEFAULT_BUS_ADMIN, DEFAULT_GAMES_ADMIN, devStoreDir, writeNatsConfig } from '../natsconf/generate.js';

// `make nats-config`: the dev bus's nats-server configuration, generated from the directory's
// record files and the role folders. The output holds absolute paths and is gitignored, like the
// certificates it names.

const USAGE = `usage: nats-config [--settings DIR] [--out FILE] [--host HOST] [--port PORT] [--store DIR] [--admin NAME]... [--games-admin NAME]...

  Reads DIR/directory/*.yml and DIR/roles/*/ (default settings/dev) and writes nats-server's
  configuration to FILE (default DIR/nats/nats.conf): TLS with client certificates of
  DIR/certs/root.crt mapped to one user per principal, each with the least rights its roles and
  the directory's service permissions need. Listens on HOST:PORT (default 127.0.0.1:4333), keeps
  JetStream in --store (default .demo/nats/root-<fingerprint of DIR/certs/root.crt>, so new
  certificates start a new directory). Two accounts: GAMES holds the games principals and their
  bucket, OPS everyone else and the directory stream. --admin names principals with every right
  in OPS (default nats-admin), --games-admin in GAMES (default nats-admin-games).`;

const { values, positionals } = parseCommandLine(() =>
  parseArgs({
    options: {
      settings: { type: 'string', default: join(packageRoot, 'settings/dev') },
      out: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '4333' },
      store: { type: 'string' },
      admin: { type: 'string', multiple: true, default: [DEFAULT_BUS_ADMIN] },
      'games-admin': { type: 'string', multiple: true, default: [DEFAULT_GAMES_ADMIN] },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  }),
  'nats-config',
  USAGE,
);
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(EXIT.ok);
}
if (positionals.length > 0) usageError(`nats-config: unexpected argument "${positionals[0]}"`, USAGE);
try {
  const out = resolve(values.out ?? join(values.settings, 'nats/nats.conf'));
  const principals = writeNatsConfig(out, {
    settings: values.settings,
    host: values.host,
    port: Number(values.port),
    storeDir: values.store ?? devStoreDir(join(packageRoot, '.demo/nats'), values.settings),
    admins: values.admin,
    gamesAdmins: values['games-admin'],
  });
  process.stdout.write(`nats-server configuration for ${principals.map((p) => p.name).join(', ')} in ${out}\n`);
} catch (err) {
  process.stderr.write(`nats-config: ${(err as Error).message}\n`);
  process.exit(1);
}
