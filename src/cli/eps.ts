#!/usr/bin/env node
// `eps server run` (also installed as `hyper`): an EPS server with the settings named by
// EPS_SETTINGS, or HYPER_SETTINGS when EPS_SETTINGS is unset.
import { startEpsServer } from '../eps/server.js';
import { loadSettings } from '../settings/load.js';
import { epsSettingsSchema } from '../settings/schemas.js';
import { runProcess, usage } from './run-process.js';

const [noun, verb] = process.argv.slice(2);
if (noun !== 'server' || verb !== 'run') {
  usage('usage: EPS_SETTINGS=settings/dev/roles/<role> eps server run');
}
await runProcess('eps', async (log) => {
  const settings = loadSettings(['EPS_SETTINGS', 'HYPER_SETTINGS'], epsSettingsSchema);
  return startEpsServer(settings, log.child({ operator: settings.name }));
});
