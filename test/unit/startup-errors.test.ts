import { describe, expect, it } from 'vitest';
import { explainStartupError, settingPathOfPort } from '../../src/cli/startup-errors.js';

// The one-line explanations a process prints when it cannot start: pure mapping from the error
// (and its causes) to words; the real CLIs are driven in test/integration/first-hour.test.ts.
const sysError = (message: string, fields: Record<string, unknown>) => Object.assign(new Error(message), fields);

describe('startup errors - explanations', () => {
  it('startup - a busy port names the setting that holds it and the role folders', () => {
    const settings = { http: { host: '0.0.0.0', port: 8000 }, stun: { port: 3478 } };
    const err = sysError('listen EADDRINUSE', { code: 'EADDRINUSE', syscall: 'listen', address: '0.0.0.0', port: 8000 });
    expect(explainStartupError(err, { settings, roleFolders: ['settings/dev/roles/games-1'] })).toBe(
      'port 0.0.0.0:8000 is already in use by another process: stop it, or change http.port in settings/dev/roles/games-1',
    );
    expect(settingPathOfPort(settings, 3478)).toBe('stun.port');
    expect(settingPathOfPort(settings, 1)).toBeUndefined();
  });

  it('startup - a UDP bind conflict is a busy port too', () => {
    const err = sysError('bind EADDRINUSE', { code: 'EADDRINUSE', syscall: 'bind', address: '0.0.0.0', port: 3478 });
    expect(explainStartupError(err, { settings: { stun: { port: 3478 } } })).toContain('change stun.port');
  });

  it('startup - the cause chain is searched (a wrapped error still explains)', () => {
    const inner = sysError("ENOENT: no such file or directory, open '/x/hd-1.crt'", { code: 'ENOENT', syscall: 'open', path: '/x/hd-1.crt' });
    const outer = new Error('reading the TLS material failed', { cause: inner });
    expect(explainStartupError(outer)).toMatch(/^cannot read \/x\/hd-1\.crt: no such file/);
  });

  it('startup - JetStream off and a stale bus configuration are told apart', () => {
    expect(explainStartupError(new Error('JetStreamNotEnabled'), { busUrl: 'nats://h:1' })).toMatch(/^JetStream is not enabled on the bus at nats:\/\/h:1/);
    const violation = new Error('Permissions Violation for Publish to "$JS.API.STREAM.INFO.KV_X"');
    expect(explainStartupError(violation, { busUrl: 'nats://h:1' })).toMatch(/does not let this process publish to \$JS\.API\.STREAM\.INFO\.KV_X: .*make nats-config/);
  });

  it('startup - an error of ours gets no explanation (the caller logs it whole)', () => {
    expect(explainStartupError(new TypeError('x is not a function'))).toBeUndefined();
  });
});
