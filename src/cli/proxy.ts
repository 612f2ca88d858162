#!/usr/bin/env node
// `proxy run public`: the public proxy in P2P mode, with the settings named by PROXY_SETTINGS.
import { missingNodeFlags, PROXY_NODE_FLAGS } from '../proxy/node-flags.js';
import { startPublicProxy } from '../proxy/public-proxy.js';
import { loadSettings } from '../settings/load.js';
import { natsUrl, proxySettingsSchema } from '../settings/schemas.js';
import { COMMON_ENV_HELP, exitWithHelpIfAsked, usageError, wrongWord } from './command-line.js';
import { runProcess } from './run-process.js';

const HELP = `usage: PROXY_SETTINGS=settings/dev/roles/public-proxy-1 proxy run public

  Runs the public proxy in P2P mode (the only mode): brokers connection requests from the bus,
  holds B's socket until A dials, splices the two (relaying ciphertext only), grants game relays,
  and serves Prometheus metrics and the live inspector on metrics { host, port }.

environment:
  PROXY_SETTINGS  role folders, colon-separated
${COMMON_ENV_HELP}

settings (YAML in the role folders): name, operator, tls { ca, cert, key }, nats { url },
  directory { url, serverName }, splice { listen { host, port }, endpoint }, metrics { host,
  port }, timeouts, brokering, gameRelays, inspector. README "Settings" lists them all.

SIGTERM or Ctrl-C drains: the proxy leaves its queue group (the operator's other proxies take every
  new request), lets its live sessions finish for timeouts.drainMs (default 30000), ends what is
  left, and exits 0; a second signal exits at once.

exit codes: 0 stopped cleanly, 1 failed while running, 2 wrong command line or settings.`;

const args = process.argv.slice(2);
exitWithHelpIfAsked(args, HELP);
const [verb, mode, ...extra] = args;
if (verb !== 'run') usageError(wrongWord('proxy', 'command', verb, ['run']), HELP);
if (mode !== 'public') usageError(wrongWord('proxy run', 'mode', mode, ['public']), HELP);
if (extra.length > 0) usageError(`proxy run public: unexpected argument "${extra[0]}"`, HELP);

await runProcess('proxy', {
  settings: () => loadSettings(['PROXY_SETTINGS'], proxySettingsSchema),
  busUrl: (settings) => natsUrl(settings),
  start: (settings, log) => {
    const missing = missingNodeFlags();
    // It runs as well without them; its idle spliced sessions then take about twice the memory.
    if (missing.length > 0) log.warn({ missing, expected: `node ${PROXY_NODE_FLAGS.join(' ')} ${process.argv[1]} run public` }, 'started without the heap flags of src/proxy/node-flags.ts');
    return startPublicProxy(settings, log.child({ proxy: settings.name }));
  },
  // The drain's deadline, then the rest of the shutdown (the splice endpoint, the bus).
  stopWithinMs: (settings) => settings.timeouts.drainMs + 5000,
});
