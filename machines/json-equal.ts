// Equality of JSON-shaped values (what a game record holds), as JSON would see them: a key whose
// value is undefined counts as absent. `skip` names keys left out at every depth. It replaces
// comparing JSON.stringify outputs, which on every poll cost more than the machine's step.

export function jsonEqual(a: unknown, b: unknown, skip?: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((x, i) => jsonEqual(x, other[i], skip));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== undefined && !skip?.has(k));
  const kx = keys(x);
  if (kx.length !== keys(y).length) return false;
  return kx.every((k) => jsonEqual(x[k], y[k], skip));
}
