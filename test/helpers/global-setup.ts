import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Integration tests start the real CLIs from dist/, exactly as `npx sd run` would, so the build
// must be current; the dev certificates must exist too. Both steps are incremental.
export default function setup(): () => void {
  // Every temporary folder of the run (the tests', and those of the processes they start, which
  // inherit TMPDIR) lands in one folder that is removed when the run ends, whatever each test
  // forgot: a test run leaves nothing behind in the system's temporary folder.
  const runTmp = mkdtempSync(join(tmpdir(), 'eps-test-run-'));
  process.env.TMPDIR = runTmp;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  // The script keeps what exists and adds what is missing (e.g. nats-server's certificate in an
  // older clone), so it runs whenever any file the tests use is absent.
  const certs = ['root', 'sd-admin', 'nats-server', 'nats-route', 'nats-admin', 'nats-admin-games'].map((n) => `settings/dev/certs/${n}.crt`);
  if (!certs.every((f) => existsSync(f))) {
    execFileSync('bash', ['scripts/make-certs.sh'], { stdio: 'inherit' });
  }
  // coturn is the independent STUN implementation the interop tests check against.
  try {
    execFileSync('bash', ['scripts/ensure-coturn.sh'], { stdio: 'inherit' });
  } catch {
    // The coturn interop tests skip with a message saying so.
  }
  // chromium is the browser the inspector's end-to-end test drives.
  try {
    execFileSync('bash', ['scripts/ensure-chromium.sh'], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch {
    // The browser test skips with a message saying so.
  }
  return () => rmSync(runTmp, { recursive: true, force: true });
}
