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

/** One root logger per process: pretty in a terminal, JSON when piped (tests, log shippers). */
export function createRootLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stdout.isTTY && process.env.LOG_FORMAT !== 'json';
  return pino({
    name,
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } }
      : {}),
  });
}

/**
 * A child logger made on first use: a long-lived session that never logs (an idle splice) then
 * holds its bindings only, not a pino child (the relay memory bench counts per-session bytes).
 */
export function childOnDemand(parent: Logger, bindings: Record<string, unknown>): () => Logger {
  let child: Logger | undefined;
  return () => (child ??= parent.child(bindings));
}
