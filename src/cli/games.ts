#!/usr/bin/env node
// `games run`: the rendezvous server (REST + STUN) with the settings named by GAMES_SETTINGS.
// `games host …` / `games guest …`: the peers, which meet through it and punch a direct UDP path.
import { parseArgs } from 'node:util';
import { runGuest } from '../games/peer/guest.js';
import { runHost, succeeded } from '../games/peer/host.js';
import type { PeerOptions } from '../games/peer/common.js';
import { startGames } from '../games/server.js';
import { gamesSettingsSchema } from '../settings/games-schema.js';
import { loadSettings } from '../settings/load.js';
import { natsUrl } from '../settings/schemas.js';
import { COMMON_ENV_HELP, EXIT, exitWithHelpIfAsked, usageError, wrongWord } from './command-line.js';
import { runProcess } from './run-process.js';

const USAGE = `usage: GAMES_SETTINGS=settings/dev/roles/games-1 games run
       games host  --server URL --name GAME [--max-guests N] [--stun HOST:PORT] [--bind HOST[:PORT]] [--timeout MS] [--relay auto|always|never] [--verbose]
       games guest --server URL --name GAME [--peer-id ID] [--stun HOST:PORT] [--bind HOST[:PORT]] [--timeout MS] [--relay auto|always|never] [--verbose]

  run:   the game rendezvous: REST on http.port, STUN on stun.port/udp. GAMES_SETTINGS names one
         or more role folders (colon-separated); NATS_URL overrides nats.url.
  host:  registers GAME and stays in it, punching a direct UDP path to every guest that joins
         (a relay of its own for each guest punching fails for), until N guests were reported
         (--max-guests; default: no limit, until Ctrl-C) or, with --timeout, until no guest
         joined for MS. Prints one JSON line per guest as soon as its outcome is known:
         {"result":"direct"|"relayed","peer":"ip:port","peerId":ID,"rttMs":n}, or
         {"result":"incompatible"|"failed","peer":…,"peerId":ID,"rttMs":null,"detail":…} for a
         guest that answered in another protocol (a client that only swaps addresses) or that
         no path reached. Deletes GAME on the way out; exits 0 if every guest got a path.
  guest: joins GAME (waiting for its host until --timeout, default 60000 ms), punches a direct
         UDP path to its host, and prints {"result":"direct"|"relayed","peer":"ip:port","rttMs":n}.
         --peer-id sets the id it joins with (default g-<128 random bits>): the probes' key
         derives from it, so it must be as unguessable.
         When punching fails (--relay auto, the default) both ask the rendezvous for a relay and
         meet through the P2P proxy; --relay always skips punching, --relay never fails instead.
         For a relayed result, peer is the proxy endpoint the path goes through. STUN defaults to
         the server's host on 3478. A call the rendezvous fails (unreachable, 429, 5xx) is retried
         with backoff and jitter until the deadline, each failure said on stderr with its URL;
         --verbose traces every step. On failure a peer explains on stderr and exits 1.

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
        'max-guests': { type: 'string' },
        'peer-id': { type: 'string' },
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
  const maxGuests = values['max-guests'] === undefined ? undefined : Number(values['max-guests']);
  if (maxGuests !== undefined && (verb !== 'host' || !(Number.isInteger(maxGuests) && maxGuests > 0))) {
    usageError(`games ${verb}: --max-guests is for the host and expects a positive integer`, USAGE);
  }
  const peerId = values['peer-id'];
  // The rendezvous's own rule for peer ids: refused here rather than retried there.
  if (peerId !== undefined && (verb !== 'guest' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(peerId))) {
    usageError(`games ${verb}: --peer-id is for the guest: 1 to 128 of A-Z a-z 0-9 _ . : -`, USAGE);
  }
  const say = (m: string) => process.stderr.write(`games ${verb}: ${m}\n`);
  const interrupted = new AbortController();
  const opts: PeerOptions = {
    relay,
    server: values.server,
    name: values.name,
    ...(values.stun ? { stun: hostPort(values.stun, '--stun') } : {}),
    ...(values.bind ? { bind: hostPort(values.bind, '--bind', 0) } : {}),
    ...(timeout ? { timeoutMs: timeout } : {}),
    ...(values.verbose ? { log: say } : {}),
    warn: say,
    signal: interrupted.signal,
  };
  // Ctrl-C: the host leaves its game cleanly (the pairings under way finish first); a second one exits at once.
  process.once('SIGINT', () => {
    say('interrupted: leaving the game');
    interrupted.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  try {
    if (verb === 'host') {
      const outcomes = await runHost({
        ...opts,
        ...(maxGuests !== undefined ? { maxGuests } : {}),
        onGuest: (o) => {
          process.stdout.write(`${JSON.stringify(o)}\n`);
          if (!succeeded(o)) say(`guest ${o.peerId}: ${o.result}: ${'detail' in o ? o.detail : ''}`);
        },
      });
      process.exit(outcomes.every(succeeded) ? EXIT.ok : EXIT.failed);
    }
    const r = await runGuest({ ...opts, ...(peerId !== undefined ? { peerId } : {}) });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(EXIT.ok);
  } catch (err) {
    say(`failed: ${(err as Error).message}`);
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
