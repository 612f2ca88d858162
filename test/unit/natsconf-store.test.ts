import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { devStoreDir } from '../../src/natsconf/generate.js';

describe('nats config store', () => {
  it('nats config store - the dev bus keeps one JetStream store per root: same root, same folder; certificates made again, a new one', () => {
    const other = mkdtempSync(join(tmpdir(), 'eps-store-pki-'));
    try {
      execFileSync('bash', ['scripts/make-certs.sh', join(other, 'certs')], { stdio: 'ignore' });
      const ours = devStoreDir('/demo/nats', 'settings/dev');
      expect(ours).toMatch(/^\/demo\/nats\/root-[0-9a-f]{16}$/);
      expect(devStoreDir('/demo/nats', 'settings/dev')).toBe(ours);
      expect(devStoreDir('/demo/nats', other)).not.toBe(ours);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
