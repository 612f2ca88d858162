import { describe, expect, it } from 'vitest';
import { PROBLEMS, problem, problemType } from '../../src/games/problems.js';

describe('games problem table', () => {
  it('games problems - the table is pinned: a new type must be added here and documented', () => {
    expect(Object.keys(PROBLEMS)).toHaveLength(20);
  });

  it('games problems - slugs are unique and statuses are HTTP errors', () => {
    const slugs = Object.values(PROBLEMS).map((p) => p.slug);
    expect(new Set(slugs).size).toBe(slugs.length);
    for (const p of Object.values(PROBLEMS)) expect(p.status).toBeGreaterThanOrEqual(400);
  });

  it('games problems - a document has every RFC 9457 member', () => {
    expect(problem('GAME_NOT_FOUND', 'no game named "x"', '/games/x')).toEqual({
      type: problemType('GAME_NOT_FOUND'),
      title: 'No such game',
      status: 404,
      detail: 'no game named "x"',
      instance: '/games/x',
    });
  });
});
