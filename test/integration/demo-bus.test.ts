import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForPort } from '../../src/devstack/stack.js';
import { NATS_SERVER_BIN } from '../helpers/nats-server.js';
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
});
