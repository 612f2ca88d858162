import { RpcError } from '../core/errors.js';
import { BrokeringStepError } from './chaos-broker.js';
import type { DuelPeer } from './duel.js';

// Every call the chaos run makes that fails is put in a class by what the caller was told. A
// clear failure says what went wrong: a JSON-RPC error with its code and message, a refused dial
// with its address, a brokering step that names what broke (a splice reset with its proxy), or a
// game peer's own explanation on stderr (which names the URL and the cause of each retried call).
// An unclear one leaves the caller guessing: no answer by the deadline (a hang), a gateway call
// reset with nothing said, a body that is not the protocol.

export interface FailureClass {
  /** The failure with its variable parts (ids, ports, counts, times) replaced by #, so alike ones group. */
  label: string;
  clear: boolean;
}

/** Ids, addresses, counts and durations vary from one failure to the next; the wording does not. */
export function normalize(text: string): string {
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/"[A-Za-z0-9+/=_-]{20,}"/g, '"<id>"')
    .replace(/\bg-[0-9a-f]{8,}\b/g, 'g-<id>')
    .replace(/\d+/g, '#')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
}

/** Socket-level words that mean the peer went away without a word. */
const UNEXPLAINED = /ECONNRESET|socket hang up|EPIPE|not a JSON-RPC response|body that is not JSON/;
const HANG = /no answer within/;

/** A call's failure: a gateway call's (src/jsonrpc/client.ts) or a step of a brokering (chaos-broker.ts). */
export function classifyCall(err: unknown): FailureClass {
  if (err instanceof BrokeringStepError) {
    // The step names what broke: A's splice reset because its proxy was killed is said as such.
    // A hang is still a hang.
    const inner = classifyCall(err.error);
    return { label: `${err.step}: ${inner.label}`, clear: inner.clear || inner.label.startsWith('reset') };
  }
  if (err instanceof RpcError) return { label: `JSON-RPC ${err.code}: ${normalize(err.message)}`, clear: true };
  const message = err instanceof Error ? err.message : String(err);
  if (HANG.test(message)) return { label: `hang: ${normalize(message)}`, clear: false };
  if (UNEXPLAINED.test(message)) return { label: `reset: ${normalize(message)}`, clear: false };
  // Nothing listens where the caller was sent: it is told so, with the address.
  if (/ECONNREFUSED/.test(message)) return { label: `refused: ${normalize(message)}`, clear: true };
  return { label: `other: ${normalize(message)}`, clear: false };
}

/** The line a failed peer ended on: its explanation (the CLI's last stderr line). */
function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .pop() ?? ''
  );
}

/** A duel's failure, from the peer that failed first in the host-then-guest order. */
export function classifyDuel(peers: DuelPeer[]): FailureClass | undefined {
  const failed = peers.find((p) => p.code !== 0);
  if (!failed) return undefined;
  if (failed.timedOut) return { label: `hang: games ${failed.verb} still running at the duel's deadline`, clear: false };
  const said = lastLine(failed.stderr);
  if (!said) return { label: `unexplained: games ${failed.verb} exited ${failed.code} with nothing on stderr`, clear: false };
  return { label: `games ${failed.verb}: ${normalize(said.replace(/^games (host|guest): /, ''))}`, clear: true };
}

/** A failed call a peer retried, and when it said so. */
export interface RetriedCall extends FailureClass {
  at: number;
}

/** A call a peer retried and said so (src/games/peer/rendezvous.ts, common.ts): `games host: <what> failed (<why>); waiting …`. */
const RETRIED = /^(?:games (?:host|guest): )?(?:(GET|POST|DELETE) https?:\/\/[^/\s]+(\S*)|(STUN) \S+) failed \((.*)\); waiting/;

/**
 * The failed calls a duel's peers retried on their way to a result, by class: the rendezvous or
 * its STUN away, a 503 while its store is, a reset by a rendezvous killed mid-request. Each was
 * said on the peer's stderr with the URL and the cause, which is the clear error a peer owes.
 */
export function retriedCalls(peers: DuelPeer[]): RetriedCall[] {
  const found: RetriedCall[] = [];
  for (const p of peers) {
    for (const { at, line } of p.said) {
      const m = RETRIED.exec(line.trim());
      if (!m) continue;
      // POSTs go to fixed paths (/games/poll); GET and DELETE name the game.
      const what = m[3] ?? `${m[1]} ${m[1] === 'POST' ? m[2] : m[2]!.replace(/\/games\/[^/?]+$/, '/games/:name')}`;
      const why = normalize(m[4]!);
      found.push({ at, label: `games ${p.verb} retried ${what}: ${why}`, clear: why !== '' });
    }
  }
  return found;
}
