import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths whose values never reach a log line: tokens, keys, splice proofs and signatures. Child loggers inherit
 * the redaction, so an actor cannot forget it.
 */
export const REDACTED_PATHS = [
  'token',
  '*.token',
  '*.*.token',
  // A session's leg tokens travel together as { a, b } (the relay reply, OpenedSession).
  'tokens',
  '*.tokens',
  '*.*.tokens',
  'proof',
  '*.proof',
  'key',
  '*.key',
  'privateKey',
  '*.privateKey',
  'signature',
  '*.signature',
  'sig',
  '*.sig',
];

/**
 * One root logger per process: pretty in a terminal, JSON when piped (tests, log shippers).
 *
 * JSON lines go out asynchronously: pino's default destination writes each line with a blocking
 * write(2) on the event loop, and the info line every brokering ends with cost each process
 * 0.5-1.5 ms of its turn per brokering when stdout is a pipe (bench/brokering.ts profiles).
 * Lines written while a write is in flight are sent together after it. pino flushes what is left
 * synchronously on exit (also after an uncaught exception); only a SIGKILL loses the tail.
 */
export function createRootLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stdout.isTTY && process.env.LOG_FORMAT !== 'json';
  const options = { name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } });
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

/**
 * A child logger made on first use: a long-lived session that never logs (an idle splice) then
 * holds its bindings only, not a pino child (the relay memory bench counts per-session bytes).
 */
export function childOnDemand(parent: Logger, bindings: Record<string, unknown>): () => Logger {
  let child: Logger | undefined;
  return () => (child ??= parent.child(bindings));
}
