// Shared by the games peer tests: run `games host` / `games guest` from dist/ (optionally through a
// prefix such as `ip netns exec NS`) and collect stdout, stderr and the exit code.
import { spawn, type ChildProcess } from 'node:child_process';

export interface PeerRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runPeer(verb: 'host' | 'guest', args: string[], prefix: string[] = [], timeoutMs = 25_000): Promise<PeerRun> {
  return startPeer(verb, args, prefix, timeoutMs).done;
}

/** runPeer, with the child at hand while it runs (to signal it) and its stdout and stderr as they come. */
export function startPeer(
  verb: 'host' | 'guest',
  args: string[],
  prefix: string[] = [],
  timeoutMs = 25_000,
): { child: ChildProcess; stdout: () => string; stderr: () => string; done: Promise<PeerRun> } {
  const argv = [...prefix, process.execPath, 'dist/src/cli/games.js', verb, ...args, '--verbose'];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<PeerRun>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

/** The one JSON line a successful peer prints. */
export function resultOf(run: PeerRun): { result: string; peer: string; rttMs: number } {
  const lines = run.stdout.trim().split('\n').filter(Boolean);
  if (run.code !== 0 || lines.length !== 1) throw new Error(`peer exited ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return JSON.parse(lines[0]!);
}
