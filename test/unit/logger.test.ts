import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { REDACTED_PATHS } from '../../src/core/logger.js';

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = pino({ redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, sink);
  return { log, lines };
}

describe('logging', () => {
  it('logger - tokens, keys and signatures never reach a log line, at any depth a logger uses', () => {
    const { log, lines } = capture();
    const secret = 'c2VjcmV0LXRva2VuLXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==';
    log.info({ token: secret }, 'top');
    log.info({ params: { token: secret } }, 'nested');
    log.info({ session: { forward: { token: secret } } }, 'deeper');
    log.info({ key: secret, sig: secret, signature: secret, privateKey: secret }, 'keys');
    log.child({ component: 'brokering' }).info({ token: secret }, 'child');
    log.info({ tokens: { a: secret, b: secret }, reply: { tokens: { a: secret } }, proof: secret }, 'leg tokens and proofs');
    expect(lines).toHaveLength(6);
    for (const line of lines) expect(line).not.toContain(secret);
    expect(lines.join('')).toContain('[redacted]');
  });
});

describe('root logger', () => {
  it('logger - lines written just before process.exit still reach a piped stdout (asynchronous destination flushed on exit)', async () => {
    const { execFileSync } = await import('node:child_process');
    const { pathToFileURL } = await import('node:url');
    const { resolve } = await import('node:path');
    const logger = pathToFileURL(resolve('dist/src/core/logger.js')).href;
    const script = `const { createRootLogger } = await import(${JSON.stringify(logger)});
      const log = createRootLogger('exit-test');
      for (let i = 0; i < 200; i++) log.info({ i }, 'line');
      process.exit(0);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info' }, encoding: 'utf8' });
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { i: number; name: string });
    expect(lines).toHaveLength(200);
    expect(lines.at(-1)).toMatchObject({ i: 199, name: 'exit-test' });
  });
});
