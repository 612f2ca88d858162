/**
 * One exit-code convention for every bin (sd, proxy, eps, hyper, games, sd-setup, nats-config):
 * 0 done (and `--help`); 1 failed while running (the bus refused us, a port is taken, a peer never
 * came); 2 the command line or the settings are wrong, so running it again unchanged cannot help.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** `--help` or `-h` anywhere: the text on stdout, exit 0, before anything else is checked. */
export function exitWithHelpIfAsked(args: readonly string[], help: string): void {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${help}\n`);
    process.exit(EXIT.ok);
  }
}

/** A wrong command line: what is wrong first, then the usage, on stderr; exit 2. */
export function usageError(problem: string, help: string): never {
  process.stderr.write(`${problem}\n\n${help}\n`);
  process.exit(EXIT.usage);
}

/** Names the first word that is not one of `expected`, or says which is missing. */
export function wrongWord(command: string, what: string, got: string | undefined, expected: readonly string[]): string {
  const choices = expected.map((e) => `"${e}"`).join(' or ');
  return got === undefined ? `${command}: missing ${what}: expected ${choices}` : `${command}: unknown ${what} "${got}": expected ${choices}`;
}

/** The environment variables every long-running bin reads, for the help texts. */
export const COMMON_ENV_HELP = `  NATS_URL    overrides nats.url of the settings (default nats://127.0.0.1:4333, the dev bus)
  LOG_LEVEL   pino level: trace, debug, info (default), warn, error
  LOG_FORMAT  json forces JSON logs in a terminal (pretty otherwise; JSON when piped)`;

/** Runs node's parseArgs; an unknown or malformed option is a usage error (exit 2), not a stack trace. */
export function parseCommandLine<T>(parse: () => T, command: string, help: string): T {
  try {
    return parse();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) usageError(`${command}: ${(err as Error).message}`, help);
    throw err;
  }
}
