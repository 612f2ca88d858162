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

/** How one peer of a duel ended. */
export interface DuelPeer {
  verb: 'host' | 'guest';
  /** Its exit code; null when it was killed at the deadline. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Each stderr line with the performance.now() it arrived at: when the peer said it. */
  said: { at: number; line: string }[];
  /** Killed because the duel outlived `deadlineMs`: a hang, not a failure the peer explained. */
  timedOut: boolean;
}

/** Runs one duel; each peer's exit code and output. Past `deadlineMs`, both are killed. */
export function duelPeers(name: string, host: DuelSide, guest: DuelSide, extra: string[] = [], opts: { deadlineMs?: number } = {}): Promise<DuelPeer[]> {
  const run = (verb: 'host' | 'guest', side: DuelSide) =>
    new Promise<DuelPeer>((resolve) => {
      // The host would otherwise stay for more guests until Ctrl-C: a duel is one guest.
      const own = verb === 'host' ? ['--max-guests', '1'] : [];
      const args = ['--server', side.server, '--name', name, '--stun', side.stun, ...extra, ...own];
      const child = spawn(process.execPath, [join(packageRoot, 'dist/src/cli/games.js'), verb, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      const said: DuelPeer['said'] = [];
      let partial = '';
      let timedOut = false;
      const timer = opts.deadlineMs === undefined ? undefined : setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), opts.deadlineMs);
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
        const lines = (partial + d.toString('utf8')).split('\n');
        partial = lines.pop()!;
        for (const line of lines) said.push({ at: performance.now(), line });
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (partial) said.push({ at: performance.now(), line: partial });
        resolve({ verb, code, stdout, stderr, said, timedOut });
      });
    });
  return Promise.all([run('host', host), run('guest', guest)]);
}

/** Runs one duel; returns each peer's JSON result line (or what it said when it failed). */
export async function duel(name: string, host: DuelSide, guest: DuelSide, extra: string[] = []): Promise<string[]> {
  // The JSON result line; what the peer said on stderr (its waits) only when it failed.
  return (await duelPeers(name, host, guest, extra)).map((p) => `games ${p.verb.padEnd(5)} ${p.code === 0 ? p.stdout.trim() : `${p.stdout}${p.stderr}`.trim()}`);
}
