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
