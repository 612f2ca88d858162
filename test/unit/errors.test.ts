import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BROKERING_CAPACITY_LIMITS, JSONRPC_ERRORS, PROBLEMS, RELAY_CAPACITY_LIMITS, RpcError, SPLICE_CLOSE_REASONS } from '../../src/core/errors.js';
import { PROBLEMS as GAMES_PROBLEMS } from '../../src/games/problems.js';
import { REJECT_REASONS } from '../../src/proxy/splice-endpoint.js';

// The one error catalogue, pinned against the README's tables: a new code, problem type, close
// reason or relay refusal cannot appear (or change) without its documented row, and a row cannot
// outlive its entry.

const readme = readFileSync('README.md', 'utf8');
const errorsSection = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1));

/** The rows of the README table whose header row starts with `| <first> |`, as arrays of cells. */
function table(first: string): string[][] {
  const lines = errorsSection.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`| ${first} |`));
  expect(start, `a table headed "${first}" in the README's Errors section`).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

describe('error catalogue', () => {
  it('errors - the tables are pinned: a new entry must be added here and documented', () => {
    expect(Object.keys(JSONRPC_ERRORS)).toHaveLength(17);
    expect(Object.keys(PROBLEMS)).toHaveLength(20);
    expect(Object.keys(SPLICE_CLOSE_REASONS)).toHaveLength(9);
    expect(Object.keys(RELAY_CAPACITY_LIMITS)).toHaveLength(2);
    expect(Object.keys(BROKERING_CAPACITY_LIMITS)).toHaveLength(2);
  });

  it('errors - every JSON-RPC code is unique and is a row of the README table, and every row a code', () => {
    const codes = Object.values(JSONRPC_ERRORS).map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
    expect(table('code').map((r) => Number(r[0])).sort()).toEqual([...codes].sort());
  });

  it('errors - every problem type is a row of the README table with its status and title', () => {
    const rows = table('problem').map(([slug, status, title]) => ({ slug, status: Number(status), title }));
    expect(rows).toEqual(Object.values(PROBLEMS).map((p) => ({ slug: p.slug, status: p.status, title: p.title })));
    // The games API serves this very table, not a copy of it.
    expect(GAMES_PROBLEMS).toBe(PROBLEMS);
  });

  it('errors - every splice close reason is a row of the README table, and the endpoint counts exactly these', () => {
    expect(Object.fromEntries(table('close reason'))).toEqual(SPLICE_CLOSE_REASONS);
    expect(REJECT_REASONS).toEqual(Object.keys(SPLICE_CLOSE_REASONS));
  });

  it('errors - every cap a relay request can hit is a row of the README table', () => {
    expect(Object.fromEntries(table('relay capacity limit'))).toEqual(RELAY_CAPACITY_LIMITS);
  });

  it('errors - every cap a connection request can hit is a row of the README table', () => {
    expect(Object.fromEntries(table('brokering capacity limit'))).toEqual(BROKERING_CAPACITY_LIMITS);
  });

  it('errors - a wire error comes back as the same RpcError', () => {
    const original = new RpcError('PERMISSION_DENIED', 'hd-3 may not call hd-2._ping');
    const back = RpcError.fromWire(original.toWire());
    expect(back.code).toBe(-32002);
    expect(back.message).toBe(original.message);
  });
});
