import { appendFileSync } from 'node:fs';

// One brokering crosses four processes (A, P, B and nats-server) and about two dozen hops between
// them, so no profile of a single process shows where its wall time goes. With EPS_TIMELINE_FILE
// set, every process appends a line `<wall clock, µs> <pid> <mark>` to that file at each point a
// brokering passes (bus messages in and out, dials, the splice endpoint's accept/preamble/route,
// A's TLS and HTTP/2 milestones); bench/brokering-timeline.ts lines the processes up and prints
// the median gap between marks. Unset (the default, and in production), a mark is one comparison.
//
// The clock is performance.timeOrigin + performance.now(): sub-millisecond and, unlike
// hrtime, comparable between processes on one machine. The append is synchronous (~20 µs) so
// marks land in order even when a process crashes; that cost is in every figure the bench prints.

const file = process.env['EPS_TIMELINE_FILE'] || undefined;

/** Records that this process reached `mark` now, when EPS_TIMELINE_FILE is set. */
export function timelineMark(mark: string): void {
  if (file === undefined) return;
  const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
  appendFileSync(file, `${micros} ${process.pid} ${mark}\n`);
}
