import type { LobbyPage } from './lobby.js';

// A lobby page costs about twenty round trips to the store (nats-server 2.9 has no batch get), and
// a lobby is read far more than it changes: every client asks for the first pages. So each
// instance keeps the pages it read for a short while, and requests for a page already being read
// wait for that read instead of making their own. A page held is at most `ttlMs` old: a game
// registered meanwhile shows up that much later; a game gone meanwhile is still left out, because
// the page's games are looked up in the store (or its cache) on every request.

export class LobbyPages {
  private readonly pages = new Map<string, { at: number; page: Promise<LobbyPage> }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
    private readonly maxPages = 1_000,
  ) {}

  page(after: number, max: number, read: () => Promise<LobbyPage>): Promise<LobbyPage> {
    const key = `${after}:${max}`;
    const at = this.now();
    const held = this.pages.get(key);
    if (held && at - held.at < this.ttlMs) return held.page;
    const page = read();
    this.pages.delete(key);
    this.pages.set(key, { at, page });
    if (this.pages.size > this.maxPages) this.pages.delete(this.pages.keys().next().value!);
    // A failed read is not kept: the next request tries again.
    page.catch(() => {
      if (this.pages.get(key)?.page === page) this.pages.delete(key);
    });
    return page;
  }
}
