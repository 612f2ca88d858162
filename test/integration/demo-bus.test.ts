import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForPort } from '../../src/devstack/stack.js';
import { probeSecuredBus } from '../../src/natsconf/probe.js';
import { DEV_CERTS, NATS_SERVER_BIN, TestNatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';

// `make demo` must not run on an open bus that happens to answer at its URL (the machines here
// run one on 4222): it stops before starting anything, saying why.
describe('demo bus', () => {
  let open: ReturnType<typeof spawn>;
  let openPort: number;
  let store: string;
  beforeAll(async () => {
    openPort = await freePort();
    store = mkdtempSync(join(tmpdir(), 'eps-open-nats-'));
    open = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(openPort), '-js', '-sd', store], { stdio: 'ignore' });
    await waitForPort(openPort, 10_000);
  });
  afterAll(() => {
    open?.kill('SIGKILL');
    rmSync(store, { recursive: true, force: true });
  });

  const demo = (natsUrl: string) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['dist/src/cli/demo.js'], { env: { ...process.env, NATS_URL: natsUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (code) => resolve({ code, out }));
    });

  it('demo bus - an open nats-server at the bus URL stops the demo with the reason', async () => {
    const r = await demo(`nats://127.0.0.1:${openPort}`);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`127.0.0.1:${openPort} is taken by something that is not the secured dev nats-server`);
    expect(r.out).toMatch(/does not support 'tls'/);
  });

  it('demo bus - the demo recognises a secured server of ours, and nothing else, as its bus', async () => {
    const secured = await TestNatsServer.start();
    try {
      expect(await probeSecuredBus(secured.url, DEV_CERTS)).toEqual({ ours: true, why: '' });
      expect((await probeSecuredBus(`nats://127.0.0.1:${openPort}`, DEV_CERTS)).ours).toBe(false);
      // Ours only for a principal it knows: a certificate it maps to no user is refused.
      expect(await probeSecuredBus(secured.url, DEV_CERTS, 'public-proxy-1')).toMatchObject({ ours: false, why: expect.stringMatching(/Authorization Violation/i) });
    } finally {
      await secured.stop();
    }
  });
});
