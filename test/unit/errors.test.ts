import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { JSONRPC_ERRORS, RpcError } from '../../src/core/errors.js';

describe('error table', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('errors - the table is pinned: a new code must be added here and documented', () => {
    expect(Object.keys(JSONRPC_ERRORS)).toHaveLength(16);
  });

  it('errors - every code is unique and documented in the README', () => {
    const codes = Object.values(JSONRPC_ERRORS).map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(readme, `code ${code} is not in the README`).toContain(`| ${code} |`);
  });

  it('errors - a wire error comes back as the same RpcError', () => {
    const original = new RpcError('PERMISSION_DENIED', 'hd-3 may not call hd-2._ping');
    const back = RpcError.fromWire(original.toWire());
    expect(back.code).toBe(-32002);
    expect(back.message).toBe(original.message);
  });
});
