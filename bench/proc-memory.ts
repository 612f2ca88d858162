import { readFileSync } from 'node:fs';

// Where a process's resident memory is, read from /proc/PID/smaps (any process: the Node relays
// and haproxy alike), in KiB. The V8 heap and glibc's thread arenas are both anonymous mappings,
// told apart by shape: a thread arena is carved out of a 64 MiB reservation, so its mapping and
// the inaccessible rest of that reservation add up to 64 MiB, 64 MiB-aligned.

export interface ResidentKiB {
  rss: number;
  /** The main malloc arena (brk). */
  brk: number;
  /** glibc's per-thread malloc arenas. */
  arenas: number;
  /** Other anonymous memory: the V8 heap, mmap'd malloc blocks, thread stacks. */
  anonymous: number;
  /** Mapped files: the executable and libraries (mostly shared, counted once per process). */
  files: number;
}

const ARENA_BYTES = 64 * 2 ** 20;

export function residentKiB(pid: number): ResidentKiB {
  const out: ResidentKiB = { rss: 0, brk: 0, arenas: 0, anonymous: 0, files: 0 };
  let start = 0;
  let end = 0;
  let name = '';
  let perms = '';
  const regions: { start: number; end: number; name: string; perms: string; rss: number }[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      [start, end, perms, name] = [parseInt(header[1]!, 16), parseInt(header[2]!, 16), header[3]!, header[4]!.trim()];
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) regions.push({ start, end, name, perms, rss: Number(rss[1]) });
  }
  for (let i = 0; i < regions.length; i++) {
    const r = regions[i]!;
    out.rss += r.rss;
    if (r.name === '[heap]') out.brk += r.rss;
    else if (r.name.startsWith('/') || r.name.startsWith('[v')) out.files += r.rss;
    else if (r.name === '' && r.start % ARENA_BYTES === 0 && r.perms.startsWith('rw')) {
      const next = regions[i + 1];
      const reserved = next && next.start === r.end && next.perms.startsWith('---') && next.name === '' ? next.end - r.start : r.end - r.start;
      if (reserved === ARENA_BYTES) out.arenas += r.rss;
      else out.anonymous += r.rss;
    } else out.anonymous += r.rss;
  }
  return out;
}
