import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The timed windows of a profiled bench run, on the clock V8's .cpuprofile files use
// (CLOCK_MONOTONIC in µs, which is also process.hrtime's), so bench/cpuprofile-top.ts can count
// only the samples taken while brokerings were timed: a process's start-up, module compilation
// and the warm-up would otherwise be a third of a short run's profile.

export interface ProfileWindow {
  startUs: number;
  endUs: number;
  /** Brokerings (or requests) completed in the window. */
  count: number;
}

export type WindowsFile = Record<string, ProfileWindow[]>;

export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class ProfileWindows {
  dir: string | undefined;
  readonly #windows: WindowsFile = {};

  open(): number {
    return monotonicUs();
  }

  close(name: string, startUs: number, count: number): void {
    (this.#windows[name] ??= []).push({ startUs, endUs: monotonicUs(), count });
    if (this.dir) writeFileSync(join(this.dir, 'windows.json'), JSON.stringify(this.#windows));
  }
}

export function readWindows(dir: string): WindowsFile {
  try {
    return JSON.parse(readFileSync(join(dir, 'windows.json'), 'utf8')) as WindowsFile;
  } catch {
    return {};
  }
}
