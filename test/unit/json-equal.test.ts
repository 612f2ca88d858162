import { describe, expect, it } from 'vitest';
import { jsonEqual } from '../../machines/json-equal.js';

// jsonEqual must agree with comparing JSON.stringify outputs (key order aside), which it replaced.

describe('jsonEqual', () => {
  it('jsonEqual - agrees with JSON for scalars, arrays, nesting and undefined keys', () => {
    const cases: [unknown, unknown, boolean][] = [
      [1, 1, true],
      ['a', 'b', false],
      [null, null, true],
      [null, {}, false],
      [[1, 2], [1, 2], true],
      [[1, 2], [2, 1], false],
      [[], {}, false],
      [{ a: 1, b: [{ c: 'x' }] }, { b: [{ c: 'x' }], a: 1 }, true],
      [{ a: 1, b: undefined }, { a: 1 }, true],
      [{ a: 1 }, { a: 1, b: 2 }, false],
      [{ a: { b: { c: 1 } } }, { a: { b: { c: 2 } } }, false],
    ];
    for (const [a, b, equal] of cases) expect(jsonEqual(a, b), JSON.stringify([a, b])).toBe(equal);
  });

  it('jsonEqual - skipped keys are left out at every depth', () => {
    const skip = new Set(['seen']);
    expect(jsonEqual({ seen: 1, g: [{ seen: 2, id: 'x' }] }, { seen: 9, g: [{ seen: 8, id: 'x' }] }, skip)).toBe(true);
    expect(jsonEqual({ seen: 1, g: [{ seen: 2, id: 'x' }] }, { seen: 9, g: [{ seen: 8, id: 'y' }] }, skip)).toBe(false);
    expect(jsonEqual({ seen: 1 }, {}, skip)).toBe(true);
  });
});
