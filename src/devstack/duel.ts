import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../core/package-root.js';

// One game duel with the real peer CLIs (`games host`, `games guest`), as the demos run it: the
// host and the guest may each talk to another rendezvous instance (they share the games bucket).

export interface DuelSide {
  /** The rendezvous's REST URL. */
  server: string;
  /** Its STUN responder, host:port. */
  stun: string;
}

/** Runs one duel; returns each peer's JSON result line (or what it said when it failed). */
export function duel(name: string, host: DuelSide, guest: DuelSide, extra: string[] = []): Promise<string[]> {
  const run = (verb: 'host' | 'guest', side: DuelSide) =>
    new Promise<string>((resolve) => {
      // The host would otherwise stay for more guests until Ctrl-C: a duel is one guest.
      const own = verb === 'host' ? ['--max-guests', '1'] : [];
      const args = ['--server', side.server, '--name', name, '--stun', side.stun, ...extra, ...own];
      const child = spawn(process.execPath, [join(packageRoot, 'dist/src/cli/games.js'), verb, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      // The JSON result line; what the peer said on stderr (its waits) only when it failed.
      child.on('close', (code) => resolve(`games ${verb.padEnd(5)} ${code === 0 ? out.trim() : `${out}${err}`.trim()}`));
    });
  return Promise.all([run('host', host), run('guest', guest)]);
}
