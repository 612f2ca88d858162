#!/usr/bin/env node
// `games run`: the rendezvous server (REST + STUN) with the settings named by GAMES_SETTINGS.
// `games host …` / `games guest …`: the peers, which meet through it and punch a direct UDP path.
import { parseArgs } from 'node:util';
import { runGuest } from '../games/peer/guest.js';
import { runHost } from '../games/peer/host.js';
import type { PeerOptions } from '../games/peer/common.js';
import { startGames } from '../games/server.js';
import { gamesSettingsSchema } from '../settings/games-schema.js';
import { loadSettings } from '../settings/load.js';
import { natsUrl } from '../settings/schemas.js';
import { COMMON_ENV_HELP, EXIT, exitWithHelpIfAsked, usageError, wrongWord } from './command-line.js';
import { runProcess } from './run-process.js';

const USAGE = `usage: GAMES_SETTINGS=settings/dev/roles/games-1 games run
       games host  --server URL --name GAME [--stun HOST:PORT] [--bind HOST[:PORT]] [--timeout MS] [--relay auto|always|never]
       games guest --server URL --name GAME [--stun HOST:PORT] [--bind HOST[:PORT]] [--timeout MS] [--relay auto|always|never]

  run:   the game rendezvous: REST on http.port, STUN on stun.port/udp. GAMES_SETTINGS names one
         or more role folders (colon-separated); NATS_URL overrides nats.url.
  host:  registers GAME, waits for a guest, punches a direct UDP path to it.
  guest: joins GAME, punches a direct UDP path to its host.
         When punching fails (--relay auto, the default) both ask the rendezvous for a relay and
         meet through the P2P proxy; --relay always skips punching, --relay never fails instead.
         Both print one JSON line {"result":"direct"|"relayed","peer":"ip:port","rttMs":n} and
         exit 0, or explain the failure on stderr and exit 1. STUN defaults to the server's host
         on 3478; for a relayed result, peer is the proxy endpoint the path goes through.
         --verbose traces the steps on stderr.

environment (games run):
  GAMES_SETTINGS  role folders, colon-separated
${COMMON_ENV_HELP}

settings of games run (YAML in the role folders): name, http { host, port, bodyLimit, rateLimit },
  stun { host, port }, nats { url }, tls { ca, cert, key }, directory { url, serverName }, games
  { bucket, hostPollTimeoutMs, sweepIntervalMs, maxGuests }, relay, inspector. README "Settings".

exit codes: 0 done (host/guest: a path was found), 1 failed while running (no partner, no path,
  server unreachable), 2 wrong command line or settings.`;

const args = process.argv.slice(2);
exitWithHelpIfAsked(args, USAGE);
const [verb, ...rest] = args;

function hostPort(text: string, what: string, defaultPort?: number): { host: string; port: number } {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(text);
  const port = m?.[2] !== undefined ? Number(m[2]) : defaultPort;
  if (!m || port === undefined || port > 65535) usageError(`games: ${what} expects HOST:PORT (e.g. 203.0.113.7:3478), got "${text}"`, USAGE);
  return { host: m[1]!, port };
}

if (verb === 'host' || verb === 'guest') {
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        server: { type: 'string' },
        name: { type: 'string' },
        stun: { type: 'string' },
        bind: { type: 'string' },
        timeout: { type: 'string' },
        relay: { type: 'string', default: 'auto' },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usageError(`games ${verb}: ${(err as Error).message}`, USAGE);
  }
  if (!values.server || !values.name) usageError(`games ${verb}: --server and --name are required`, USAGE);
  try {
    new URL(values.server);
  } catch {
    usageError(`games ${verb}: --server must be a URL like http://host:8000, got "${values.server}"`, USAGE);
  }
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && !(Number.isInteger(timeout) && timeout > 0)) usageError(`games ${verb}: --timeout expects milliseconds`, USAGE);
  const relay = values.relay;
  if (relay !== 'auto' && relay !== 'always' && relay !== 'never') usageError(`games ${verb}: --relay expects auto, always or never, got "${relay}"`, USAGE);
  const opts: PeerOptions = {
    relay,
    server: values.server,
    name: values.name,
    ...(values.stun ? { stun: hostPort(values.stun, '--stun') } : {}),
    ...(values.bind ? { bind: hostPort(values.bind, '--bind', 0) } : {}),
    ...(timeout ? { timeoutMs: timeout } : {}),
    ...(values.verbose ? { log: (m: string) => process.stderr.write(`games ${verb}: ${m}\n`) } : {}),
  };
  try {
    const r = await (verb === 'host' ? runHost(opts) : runGuest(opts));
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(EXIT.ok);
  } catch (err) {
    process.stderr.write(`games ${verb}: failed: ${(err as Error).message}\n`);
    process.exit(EXIT.failed);
  }
} else if (verb !== 'run') {
  usageError(wrongWord('games', 'command', verb, ['run', 'host', 'guest']), USAGE);
} else if (rest.length > 0) {
  usageError(`games run: unexpected argument "${rest[0]}"`, USAGE);
} else {
  await runProcess('games', {
    settings: () => loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema),
    busUrl: (settings) => natsUrl(settings),
    start: (settings, log) => startGames(settings, log.child({ games: settings.name })),
  });
}
