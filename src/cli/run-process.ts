import { createRootLogger, type Logger } from '../core/logger.js';
import { SettingsError } from '../settings/load.js';

/**
 * The shared life of every command: start, log, stop cleanly on SIGINT/SIGTERM (a second signal
 * forces the exit), and exit non-zero with a readable message when start-up fails.
 */
export async function runProcess(name: string, start: (log: Logger) => Promise<{ close(): Promise<void> }>): Promise<void> {
  const log = createRootLogger(name);
  let running: { close(): Promise<void> };
  try {
    running = await start(log);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`${name}: ${err.message}\n`);
    } else {
      log.fatal({ err }, 'start-up failed');
    }
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 200).unref();
    return;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took longer than 5 s: exiting');
      process.exit(1);
    }, 5000);
    force.unref();
    running.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

export function usage(text: string): never {
  process.stderr.write(`${text}\n`);
  process.exit(2);
}
