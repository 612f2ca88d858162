import { createRootLogger, type Logger } from '../core/logger.js';
import { SettingsError } from '../settings/load.js';
import { EXIT } from './command-line.js';
import { explainStartupError, type StartupContext } from './startup-errors.js';

export interface ProcessDefinition<S> {
  /** Reads and validates the settings; a SettingsError is the user's mistake (exit 2). */
  settings: () => S;
  /** The bus URL these settings name, for messages about the bus. */
  busUrl?: (settings: S) => string;
  start: (settings: S, log: Logger) => Promise<{ close(): Promise<void> }>;
  /** How long close() may take before the process exits anyway (default 5 s; a draining proxy needs its deadline). */
  stopWithinMs?: (settings: S) => number;
}

/** How long a clean shutdown may take, unless the process says otherwise. */
const DEFAULT_STOP_WITHIN_MS = 5000;

/**
 * The shared life of every long-running command: load settings, start, stop cleanly on the first
 * SIGINT or SIGTERM (a second one forces the exit), and, when start-up fails, say why in one line
 * on stderr: a settings mistake exits 2, anything else 1 (see EXIT).
 */
export async function runProcess<S extends { roleFolders?: string[] }>(name: string, def: ProcessDefinition<S>): Promise<void> {
  const log = createRootLogger(name);
  let settings: S;
  try {
    settings = def.settings();
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(EXIT.usage);
  }
  let running: { close(): Promise<void> };
  try {
    running = await def.start(settings, log);
  } catch (err) {
    const ctx: StartupContext = { settings, roleFolders: settings.roleFolders, busUrl: def.busUrl?.(settings) };
    const why = err instanceof SettingsError ? err.message : explainStartupError(err, ctx);
    if (why) {
      log.fatal({ why }, 'start-up failed');
      process.stderr.write(`${name}: cannot start: ${why}\n`);
    } else {
      log.fatal({ err }, 'start-up failed');
      process.stderr.write(`${name}: cannot start: ${(err as Error).message} (the log above has the details)\n`);
    }
    process.exitCode = err instanceof SettingsError ? EXIT.usage : EXIT.failed;
    setTimeout(() => process.exit(), 200).unref();
    return;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(EXIT.failed);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const withinMs = def.stopWithinMs?.(settings) ?? DEFAULT_STOP_WITHIN_MS;
    const force = setTimeout(() => {
      log.error(`shutdown took longer than ${withinMs / 1000} s: exiting`);
      process.exit(EXIT.failed);
    }, withinMs);
    force.unref();
    running.close().then(
      () => {
        log.info('stopped');
        process.exit(EXIT.ok);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(EXIT.failed);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
