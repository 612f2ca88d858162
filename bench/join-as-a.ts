import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';

// hd-1's side of the brokering benches, from a given build (its dist/, so a before build can be
// measured by this build's bench): hd-1's settings (EPS_SETTINGS, as the stack wrote them), its
// own bus connection and presence, waiting until hd-2 is in its directory. What it returns makes
// A's PeerChannels of that build.

/* eslint-disable @typescript-eslint/no-explicit-any -- another build's modules, loaded by path */
export interface JoinedA {
  settings: any;
  /** A new PeerChannels of that build speaking as hd-1, with `extra` options (e.g. inspect). */
  channels(extra?: Record<string, unknown>): any;
}

export async function joinAsA(root: string, connectionName: string): Promise<JoinedA> {
  const from = (p: string) => import(pathToFileURL(join(resolve(root), 'dist/src', p)).href);
  const [{ loadSettings }, { epsSettingsSchema, natsUrl }, { connectBus }, { joinAsOperator }, { PeerChannels }, tlsMod] = await Promise.all([
    from('settings/load.js'),
    from('settings/schemas.js'),
    from('core/nats.js'),
    from('operator/presence.js'),
    from('eps/peer-channels.js'),
    from('core/tls-material.js'),
  ]);
  const settings = loadSettings(['EPS_SETTINGS'], epsSettingsSchema);
  const log = pino({ level: 'warn' });
  const tls = tlsMod.readTlsMaterial(settings.tls);
  const nc = await connectBus({ url: natsUrl(settings), name: connectionName, tls }, log);
  const { directory, bus, signer } = joinAsOperator({
    nc,
    operator: settings.name,
    tls,
    directory: settings.directory,
    envelopeMaxAgeMs: settings.envelopeMaxAgeMs,
    maxEnvelopeBytes: settings.maxEnvelopeBytes,
    requestTimeoutMs: settings.timeouts.busRequestMs,
    log,
  });
  await directory.ready();
  const until = Date.now() + 30_000;
  while (!directory.entry('hd-2')) {
    if (Date.now() > until) throw new Error('hd-2 never appeared in the directory');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    settings,
    channels: (extra = {}) => new PeerChannels({ self: settings.name, tls, signer, directory, bus, log, timeouts: settings.timeouts, ...extra }),
  };
}
