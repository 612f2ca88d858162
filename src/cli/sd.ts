#!/usr/bin/env node
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { createRootLogger, type Logger } from '../core/logger.js';
import { connectBus, type NatsConnection } from '../core/nats.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { loadSettings, SettingsError } from '../settings/load.js';
import { natsUrl, sdSettingsSchema, type SdSettings } from '../settings/schemas.js';
import { startSd } from '../directory/sd-server.js';
import { damageMessage } from '../directory/damage.js';
import { deleteStream, scanStream, truncateStream, writeBackup } from '../directory/repair.js';
import { COMMON_ENV_HELP, EXIT, exitWithHelpIfAsked, usageError, wrongWord } from './command-line.js';
import { runProcess } from './run-process.js';
import { explainStartupError } from './startup-errors.js';

const USAGE = `usage: sd run
       sd repair [--reset] [--yes] [--backup DIR] [--admin-cert FILE --admin-key FILE]

  run     Runs the service directory.
  repair  Checks the record stream as the sd replays it. If a record does not verify, shows what
          it would remove (that record and every later one) and, with --yes, rebuilds the stream
          with the records before it, after writing a backup of every stored record to DIR
          (default: the system's temporary folder).
          --reset deletes the whole stream instead (development: a directory written under other
          certificates); the sd recreates it empty, and sd-setup fills it again.
          Without --yes nothing is changed. It connects to the bus as its admin principal
          (nats-admin.crt/.key beside the sd's certificate unless --admin-cert/--admin-key).

environment:
  SD_SETTINGS  role folders, colon-separated, e.g. SD_SETTINGS=settings/dev/roles/sd-1 sd run
${COMMON_ENV_HELP}

settings (YAML in the role folders): name, tls { ca, cert, key }, nats { url }, listen { host,
  port }, stream, inspector. README "Settings" lists them all.

exit codes: 0 done (repair: nothing to do, or repaired), 1 failed while running, 2 wrong command
  line or settings, or a repair refused without --yes.`;

function readSettings(): SdSettings {
  try {
    return loadSettings(['SD_SETTINGS'], sdSettingsSchema);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`sd: ${err.message}\n`);
      process.exit(EXIT.usage);
    }
    throw err;
  }
}

/**
 * The repair deletes and recreates the directory stream, which only the bus admin principal may
 * do (the sd itself may only append): this is the one place to connect as it. Its certificate is
 * the one `make certs` writes beside the sd's, unless --admin-cert/--admin-key name another.
 */
function connectAsStreamAdmin(settings: SdSettings, admin: { cert?: string; key?: string }, log: Logger): Promise<NatsConnection> {
  const certs = dirname(settings.tls.cert);
  const tls = readTlsMaterial({
    ca: settings.tls.ca,
    cert: admin.cert ?? join(certs, 'nats-admin.crt'),
    key: admin.key ?? join(certs, 'nats-admin.key'),
  });
  return connectBus({ url: natsUrl(settings), randomize: settings.nats.randomize, name: `${settings.name}-repair`, tls }, log);
}

/** `sd run`: the directory's JSON-RPC service over the bus's record stream, until a signal. */
function run(): Promise<void> {
  return runProcess('sd', {
    settings: () => loadSettings(['SD_SETTINGS'], sdSettingsSchema),
    busUrl: (settings) => natsUrl(settings),
    start: async (settings, log) => {
      const nc = await connectBus({ url: natsUrl(settings), randomize: settings.nats.randomize, name: settings.name, tls: readTlsMaterial(settings.tls) }, log);
      const sd = await startSd(settings, nc, log).catch(async (err: unknown) => {
        await nc.close();
        throw err;
      });
      return {
        close: async () => {
          await sd.close();
          await nc.drain();
        },
      };
    },
  });
}

/** Exit codes: 0 done or nothing to do, 2 refused (no --yes, or bad usage), 1 failed. */
async function repair(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      yes: { type: 'boolean', default: false },
      reset: { type: 'boolean', default: false },
      backup: { type: 'string', default: tmpdir() },
      'admin-cert': { type: 'string' },
      'admin-key': { type: 'string' },
    },
  });
  const settings = readSettings();
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const log = createRootLogger('sd-repair', process.env.LOG_LEVEL ?? 'warn');
  const nc = await connectAsStreamAdmin(settings, { cert: values['admin-cert'], key: values['admin-key'] }, log);
  try {
    const stream = settings.stream;
    const scan = await scanStream(nc, stream, { rootCa: readFileSync(settings.tls.ca), anyCodeSigningCert: true });
    if (!scan) {
      out(`stream ${stream} does not exist; nothing to ${values.reset ? 'reset' : 'repair'} (the sd creates it when it starts)`);
      return 0;
    }
    const n = scan.stored.length;
    out(`stream ${stream} holds ${n} record${n === 1 ? '' : 's'}; ${scan.good.length} verify from the first one on`);
    if (scan.damage) out(damageMessage(scan.damage));
    if (values.reset) {
      out(`will delete stream ${stream} and its ${n} record${n === 1 ? '' : 's'}`);
      if (!values.yes) {
        out('refusing to change the stream without --yes');
        return 2;
      }
      out(`backup of every stored record: ${writeBackup(scan, values.backup)}`);
      await deleteStream(nc, stream);
      out(`deleted stream ${stream}; the sd recreates it on its next submit: run sd-setup, and restart the servers so they drop the old chain`);
      return 0;
    }
    if (!scan.damage) {
      out(`the chain in ${stream} verifies; nothing to repair`);
      return 0;
    }
    const from = scan.damage.seq;
    const removed = scan.stored.filter((m) => m.seq >= from);
    const seqs = removed.map((m) => m.seq);
    out(
      `will remove ${removed.length} stored record${removed.length === 1 ? '' : 's'} (${seqs.length ? `sequences ${seqs[0]}..${seqs.at(-1)}` : 'none; the sequence gap goes'}) ` +
        `and rebuild ${stream} with records 1..${scan.good.length}`,
    );
    if (!values.yes) {
      out('refusing to change the stream without --yes');
      return 2;
    }
    out(`backup of every stored record: ${writeBackup(scan, values.backup)}`);
    await truncateStream(nc, scan);
    out(`repaired: ${stream} holds records 1..${scan.good.length}; the sd accepts submissions again and the servers follow on`);
    return 0;
  } finally {
    await nc.close();
  }
}

const args = process.argv.slice(2);
exitWithHelpIfAsked(args, USAGE);
const [command, ...rest] = args;
const fail = (err: unknown) => {
  const why = explainStartupError(err);
  if (why) process.stderr.write(`sd: ${why}\n`);
  else process.stderr.write(`sd: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(EXIT.failed);
};
if (command === 'run') {
  if (rest.length > 0) usageError(`sd run: unexpected argument "${rest[0]}"`, USAGE);
  await run();
} else if (command === 'repair') {
  repair(rest).then((code) => process.exit(code), (err: unknown) => {
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      usageError(`sd repair: ${err.message}`, USAGE);
    }
    fail(err);
  });
} else {
  usageError(wrongWord('sd', 'command', command, ['run', 'repair']), USAGE);
}
