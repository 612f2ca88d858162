import { describe, expect, it } from 'vitest';
import { LobbyPages } from '../../src/games/lobby-pages.js';
import type { LobbyPage } from '../../src/games/lobby.js';

// Lobby pages are read once per TTL and page position, concurrent asks share one read, and a
// failed read is not kept.

function setup(ttlMs = 1_000) {
  const clock = { t: 0 };
  let reads = 0;
  const pages = new LobbyPages(ttlMs, () => clock.t);
  const read = (page: LobbyPage) => () => {
    reads++;
    return Promise.resolve(page);
  };
  return { clock, pages, read, reads: () => reads };
}

const page = (names: string[]): LobbyPage => ({ entries: names.map((name, i) => ({ seq: i + 1, name, at: 0 })), end: true });

describe('lobby pages', () => {
  it('lobby pages - a page is read once per TTL; another position or size is read on its own', async () => {
    const { clock, pages, read, reads } = setup();
    expect(await pages.page(0, 20, read(page(['a'])))).toEqual(page(['a']));
    expect(await pages.page(0, 20, read(page(['b'])))).toEqual(page(['a']));
    await pages.page(0, 10, read(page(['c'])));
    await pages.page(5, 20, read(page(['d'])));
    expect(reads()).toBe(3);
    clock.t += 1_000;
    expect(await pages.page(0, 20, read(page(['e'])))).toEqual(page(['e']));
  });

  it('lobby pages - asks while a read is in flight wait for it', async () => {
    const { pages, reads } = setup();
    let n = 0;
    const slow = () => {
      n++;
      return new Promise<LobbyPage>((r) => setTimeout(() => r(page(['x'])), 10));
    };
    const all = await Promise.all(Array.from({ length: 20 }, () => pages.page(0, 20, slow)));
    expect(all.every((p) => p.entries[0]?.name === 'x')).toBe(true);
    expect(n).toBe(1);
    expect(reads()).toBe(0);
  });

  it('lobby pages - a failed read is not kept', async () => {
    const { pages, read, reads } = setup();
    await expect(pages.page(0, 20, () => Promise.reject(new Error('store away')))).rejects.toThrow('store away');
    expect(await pages.page(0, 20, read(page(['a'])))).toEqual(page(['a']));
    expect(reads()).toBe(1);
  });
});
