#!/usr/bin/env node
// `eps server run` (also installed as `hyper`): an EPS server with the settings named by
// EPS_SETTINGS, or HYPER_SETTINGS when EPS_SETTINGS is unset.
import { basename } from 'node:path';
import { startEpsServer } from '../eps/server.js';
import { loadSettings } from '../settings/load.js';
import { epsSettingsSchema, natsUrl } from '../settings/schemas.js';
import { COMMON_ENV_HELP, exitWithHelpIfAsked, usageError, wrongWord } from './command-line.js';
import { runProcess } from './run-process.js';

// Installed twice: the Hyper edition of the seed is the same server under its own name.
const bin = basename(process.argv[1] ?? '') === 'hyper' ? 'hyper' : 'eps';
const settingsVar = bin === 'hyper' ? 'HYPER_SETTINGS' : 'EPS_SETTINGS';
const example = bin === 'hyper' ? 'public-proxy-hyper-1' : 'hd-1';

const HELP = `usage: ${settingsVar}=settings/dev/roles/${example} ${bin} server run

  Runs an EPS server: joins the bus as the operator its certificate names, follows the signed
  service directory, answers its peers' gRPC calls (on grpc.listen, or through its proxy when it
  has none) and, with jsonrpc.listen, serves the JSON-RPC gateway on which "<peer>.<method>"
  reaches a peer (brokering a channel through the peer's proxy when needed).

environment:
  EPS_SETTINGS    role folders, colon-separated
  HYPER_SETTINGS  the same, read when EPS_SETTINGS is unset (the Hyper edition's name for it)
${COMMON_ENV_HELP}

settings (YAML in the role folders): name, tls { ca, cert, key }, nats { url }, directory { url,
  serverName }, jsonrpc { listen { host, port } }, grpc { listen { host, port } }, timeouts,
  inspector. README "Settings" lists them all.

exit codes: 0 stopped cleanly, 1 failed while running, 2 wrong command line or settings.`;

const args = process.argv.slice(2);
exitWithHelpIfAsked(args, HELP);
const [noun, verb, ...extra] = args;
if (noun !== 'server') usageError(wrongWord(bin, 'command', noun, ['server']), HELP);
if (verb !== 'run') usageError(wrongWord(`${bin} server`, 'subcommand', verb, ['run']), HELP);
if (extra.length > 0) usageError(`${bin} server run: unexpected argument "${extra[0]}"`, HELP);

await runProcess(bin, {
  settings: () => loadSettings(['EPS_SETTINGS', 'HYPER_SETTINGS'], epsSettingsSchema),
  busUrl: (settings) => natsUrl(settings),
  start: (settings, log) => startEpsServer(settings, log.child({ operator: settings.name })),
});
