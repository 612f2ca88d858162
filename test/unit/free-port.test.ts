import { afterEach, describe, expect, it } from 'vitest';
import { freePort, pickRange } from '../../src/devstack/free-port.js';

// Parallel test workers pick their ports from slices that never overlap, so one worker's pick is
// never another's before either binds it (the flake this prevents: a role that cannot bind its port).

const saved = process.env['VITEST_POOL_ID'];
afterEach(() => {
  // Assigning undefined to an environment variable would store the string "undefined".
  if (saved === undefined) delete process.env['VITEST_POOL_ID'];
  else process.env['VITEST_POOL_ID'] = saved;
});

describe('free ports', () => {
  it('free port - each test worker has its own slice of the range below the ephemeral ports, and picks in it', async () => {
    const slices = [];
    for (const id of ['1', '2', '3', '4']) {
      process.env['VITEST_POOL_ID'] = id;
      const [low, high] = pickRange();
      slices.push([low, high] as const);
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(low);
      expect(port).toBeLessThan(high);
    }
    for (let i = 1; i < slices.length; i++) expect(slices[i]![0]).toBeGreaterThanOrEqual(slices[i - 1]![1]);
    expect(slices[0]![0]).toBeGreaterThanOrEqual(20_000);
    expect(slices.at(-1)![1]).toBeLessThanOrEqual(32_768);
  });

  it('free port - outside the tests (no pool id) the whole range is used', () => {
    delete process.env['VITEST_POOL_ID'];
    expect(pickRange()).toEqual([20_000, 32_767]);
  });
});
