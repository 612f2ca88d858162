import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestNatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';
import { stunBinding } from '../../src/games/stun-client.js';
import { GamesProcess } from './games-process.js';

// Interoperability with Debian's coturn, both ways: its stunclient against `games run`'s STUN
// port, and our client against a real turnserver. scripts/ensure-coturn.sh installs coturn.
const run = promisify(execFile);
const hasCoturn = ['turnutils_stunclient', 'turnserver'].every((bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0);
if (!hasCoturn) {
  console.warn('games stun interop: coturn (turnutils_stunclient, turnserver) is missing; run scripts/ensure-coturn.sh. Skipping.');
}

describe.skipIf(!hasCoturn)('STUN interoperability with coturn', () => {
  let nats: TestNatsServer;
  let games: GamesProcess;
  let turn: ChildProcess | undefined;
  let turnDir: string;
  let turnPort: number;

  beforeAll(async () => {
    nats = await TestNatsServer.start({ buckets: [`GAMES_STUN_${process.pid}`] });
    games = await GamesProcess.start({ natsUrl: nats.url, bucket: `GAMES_STUN_${process.pid}` });
    turnPort = await freePort();
    turnDir = mkdtempSync(join(tmpdir(), 'coturn-'));
    turn = spawn(
      'turnserver',
      [
        '-n', '--stun-only', '--no-cli', '--no-tls', '--no-dtls',
        '--listening-ip', '127.0.0.1', '--listening-port', String(turnPort),
        // Keep coturn's state out of /var/lib/turn and its logs out of /var/log.
        '--userdb', join(turnDir, 'turndb'), '--pidfile', join(turnDir, 'turn.pid'),
        '--log-file', 'stdout', '--simple-log',
      ],
      { stdio: 'ignore' },
    );
  });

  afterAll(async () => {
    turn?.kill('SIGTERM');
    await games?.stop();
    await nats?.stop();
    if (turnDir) rmSync(turnDir, { recursive: true, force: true });
  });

  it('games stun - turnutils_stunclient gets its reflexive address from games run', async () => {
    const { stdout } = await run('turnutils_stunclient', ['-p', String(games.stunPort), '127.0.0.1'], { timeout: 10_000 });
    const m = /UDP reflexive addr: (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    expect(m![1]).toBe('127.0.0.1');
    expect(Number(m![2])).toBeGreaterThan(0);
  });

  it('games stun - our client gets its mapped address from coturn turnserver', async () => {
    // turnserver takes a moment to bind; the client's own retransmissions cover it.
    const r = await stunBinding({ host: '127.0.0.1', port: turnPort }, { rtoMs: 100, maxRequests: 7, capMs: 8_000, fingerprint: true, software: 'eps-p2p test' });
    expect(r.mapped.family).toBe('IPv4');
    expect(r.mapped.address).toBe('127.0.0.1');
    expect(r.software).toMatch(/Coturn/i);
  });

  it('games stun - our client and server agree on the mapped port of a shared socket', async () => {
    const { createSocket } = await import('node:dgram');
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const r = await stunBinding({ host: '127.0.0.1', port: games.stunPort }, { socket, rtoMs: 100, capMs: 3_000 });
      expect(r.mapped).toEqual({ family: 'IPv4', address: '127.0.0.1', port: socket.address().port });
      // No SOFTWARE unless stun.software is set: 20 bytes less in every answer.
      expect(r.software).toBeUndefined();
    } finally {
      socket.close();
    }
  });
});
