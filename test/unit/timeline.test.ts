import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

// The timeline file is read from the environment once, when the module loads, so each case runs
// the built module in a process of its own.
const timeline = pathToFileURL(resolve('dist/src/core/timeline.js')).href;
const marks = `const { timelineMark } = await import(${JSON.stringify(timeline)});
  timelineMark('bus.in connectionRequest');
  timelineMark('splice.accept');`;

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function run(env: Record<string, string | undefined>): void {
  execFileSync(process.execPath, ['--input-type=module', '-e', marks], { env: { ...process.env, ...env } });
}

describe('timeline marks', () => {
  it('timeline - with EPS_TIMELINE_FILE each mark is one line: wall-clock µs, pid, mark, in order', () => {
    dir = mkdtempSync(join(tmpdir(), 'timeline-'));
    const file = join(dir, 'marks.txt');
    const before = Date.now() * 1000;
    run({ EPS_TIMELINE_FILE: file });
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((l) => l.split(' '));
    expect(first!.slice(2).join(' ')).toBe('bus.in connectionRequest');
    expect(second!.slice(2)).toEqual(['splice.accept']);
    expect(first![1]).toBe(second![1]);
    const at = Number(first![0]);
    // Comparable with another process's wall clock: within a minute of this one's.
    expect(at).toBeGreaterThanOrEqual(before - 1_000);
    expect(at).toBeLessThan(before + 60_000_000);
    expect(Number(second![0])).toBeGreaterThanOrEqual(at);
  });

  it('timeline - an empty EPS_TIMELINE_FILE counts as unset: marks write nothing and do not throw', () => {
    dir = mkdtempSync(join(tmpdir(), 'timeline-'));
    // Appending to '' would throw ENOENT and fail the child; a relative default would land in cwd.
    execFileSync(process.execPath, ['--input-type=module', '-e', marks], { cwd: dir, env: { ...process.env, EPS_TIMELINE_FILE: '' } });
    expect(readdirSync(dir)).toEqual([]);
  });
});
