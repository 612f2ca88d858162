import type { z } from 'zod';

// Hand-written twins of a few zod schemas on the critical path of a brokering. Each process wakes
// cold for a brokering, and the first zod parse of a wake costs ~100-200 µs (13 hot): the twins
// check the usual, valid input in ~15-30 µs cold, and whatever they do not accept goes to the
// schema, which decides and words the refusal. So a twin must accept nothing its schema refuses
// and return exactly what the schema returns (test/unit/shape-twins.test.ts checks both).

/** A plain object as JSON.parse makes it (not an array, not null). */
export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/** A string of `min` to `max` UTF-16 code units, as z.string().min().max() counts. */
export const isText = (v: unknown, min: number, max: number): v is string => typeof v === 'string' && v.length >= min && v.length <= max;

/** No key outside `allowed`: what z.strictObject requires. */
export function onlyKeys(o: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

export type Parsed<T> = { success: true; data: T } | { success: false; error: z.ZodError };

/** The schema's verdict on `raw`, by the twin when it accepts. */
export function parseWithTwin<S extends z.ZodType>(schema: S, twin: (raw: unknown) => z.output<S> | undefined, raw: unknown): Parsed<z.output<S>> {
  const fast = twin(raw);
  if (fast !== undefined) return { success: true, data: fast };
  const parsed = schema.safeParse(raw);
  return parsed.success ? { success: true, data: parsed.data } : { success: false, error: parsed.error };
}
