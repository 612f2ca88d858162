#!/usr/bin/env node
import { createRootLogger } from '../core/logger.js';
import { connectBus } from '../core/nats.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { loadSettings, SettingsError } from '../settings/load.js';
import { natsUrl, sdSettingsSchema } from '../settings/schemas.js';
import { startSd } from '../directory/sd-server.js';

const USAGE = `usage: sd run

  Runs the service directory. Settings come from the role folders in SD_SETTINGS
  (colon-separated), e.g. SD_SETTINGS=settings/dev/roles/sd-1 sd run.
  NATS_URL overrides nats.url.`;

async function run(): Promise<void> {
  const log = createRootLogger('sd');
  let settings;
  try {
    settings = loadSettings(['SD_SETTINGS'], sdSettingsSchema);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const nc = await connectBus({ url: natsUrl(settings), name: settings.name, tls: readTlsMaterial(settings.tls) }, log);
  const sd = await startSd(settings, nc, log);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    try {
      await sd.close();
      await nc.drain();
    } catch (err) {
      log.error({ err }, 'unclean shutdown');
      process.exit(1);
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

const [command, ...rest] = process.argv.slice(2);
if (command !== 'run' || rest.length > 0) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}
run().catch((err: unknown) => {
  process.stderr.write(`sd: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
