#!/usr/bin/env node
// `proxy run public`: the public proxy in P2P mode, with the settings named by PROXY_SETTINGS.
import { startPublicProxy } from '../proxy/public-proxy.js';
import { loadSettings } from '../settings/load.js';
import { proxySettingsSchema } from '../settings/schemas.js';
import { runProcess, usage } from './run-process.js';

const [verb, mode] = process.argv.slice(2);
if (verb !== 'run' || mode !== 'public') {
  usage('usage: PROXY_SETTINGS=settings/dev/roles/public-proxy-1 proxy run public');
}
await runProcess('proxy', async (log) => {
  const settings = loadSettings(['PROXY_SETTINGS'], proxySettingsSchema);
  return startPublicProxy(settings, log.child({ proxy: settings.name }));
});
