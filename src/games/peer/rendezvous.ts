import { givingUp, PeerError, sleep } from './common.js';

// The peers' side of the rendezvous REST API, riding out faults. A call that fails for a reason
// time can fix (the server restarting, its store away, a rate limit, a network hiccup) is retried
// with capped exponential backoff and jitter until the caller's deadline, which is the game's own
// (the guest's --timeout, the host's); every retry is said on stderr with the URL that failed,
// because a peer that waits silently looks hung. Answers that waiting cannot change go back to the
// caller as they are.

/** Statuses worth waiting out: a rate limit, and a server or store that is away for now. */
const RETRYABLE = new Set([429, 500, 502, 503, 504]);

/** The first wait after a failure; doubled on each further failure up to BACKOFF_CAP_MS. */
export const BACKOFF_BASE_MS = 200;
/** Low enough that a peer notices a returning server within about a second (the wait's mean). */
export const BACKOFF_CAP_MS = 2000;
/** A server that accepted the connection but answers nothing for this long counts as away. */
const ATTEMPT_TIMEOUT_MS = 5000;
/** A Retry-After further out than this is not trusted blindly: the deadline still decides. */
const MAX_RETRY_AFTER_MS = 30_000;

export interface Answer<T> {
  status: number;
  body: T;
}

export interface CallOptions {
  /** Epoch ms after which a failing call gives up with the last failure. */
  deadline: number;
  /** Said in the wait message: what the answer is needed for. */
  waitingFor: string;
  method?: 'POST' | 'GET' | 'DELETE';
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface RendezvousLog {
  /** Every step (--verbose). */
  step: (msg: string) => void;
  /** Always shown: a failed call and what the peer waits for. */
  warn: (msg: string) => void;
}

/**
 * Full jitter over an exponential ceiling: peers that failed together (a server restart) spread
 * their retries instead of arriving again in one burst.
 */
export function backoffMs(failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Retry-After in seconds or as an HTTP date (RFC 9110), in ms from now; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now;
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

export class RendezvousClient {
  constructor(
    readonly server: string,
    private readonly log: RendezvousLog,
  ) {}

  /**
   * One call, retried while the failure is one time can fix and the deadline allows. Resolves
   * with any answer that is not such a failure (2xx, 4xx but 429): the caller decides about it.
   */
  async call<T>(path: string, body: unknown, opts: CallOptions): Promise<Answer<T>> {
    const url = new URL(path, this.server).toString();
    const method = opts.method ?? 'POST';
    for (let failures = 1; ; failures++) {
      const attempt = await this.once<T>(url, method, body, opts);
      if (attempt.type === 'answer') return attempt.answer;
      opts.signal?.throwIfAborted();
      const left = opts.deadline - Date.now();
      if (left <= 0) throw new PeerError(`${method} ${url} failed (${attempt.why}); gave up waiting for the rendezvous ${opts.waitingFor}: the deadline passed`);
      const wait = Math.min(left, attempt.retryAfterMs ?? backoffMs(failures));
      this.log.warn(`${method} ${url} failed (${attempt.why}); waiting for the rendezvous ${opts.waitingFor}, next try in ${(wait / 1000).toFixed(1)} s (${givingUp(left)})`);
      await sleep(wait, opts.signal);
    }
  }

  private async once<T>(
    url: string,
    method: string,
    body: unknown,
    opts: CallOptions,
  ): Promise<{ type: 'answer'; answer: Answer<T> } | { type: 'failed'; why: string; retryAfterMs?: number }> {
    const timeout = AbortSignal.timeout(ATTEMPT_TIMEOUT_MS);
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout,
      });
      text = await res.text();
    } catch (err) {
      opts.signal?.throwIfAborted();
      return { type: 'failed', why: networkReason(err) };
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // A gateway's HTML error page, a truncated answer: not the rendezvous speaking.
      if (RETRYABLE.has(res.status) || res.status < 300) return { type: 'failed', why: `HTTP ${res.status} with a body that is not JSON` };
    }
    const answer = { status: res.status, body: parsed as T };
    if (!RETRYABLE.has(res.status)) {
      this.log.step(`${method} ${url} → ${res.status}`);
      return { type: 'answer', answer };
    }
    const retryAfter = retryAfterMs(res.headers.get('retry-after'));
    return { type: 'failed', why: problemText(answer), ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}) };
  }
}

/** fetch hides the reason in `cause`: ECONNREFUSED, a reset, a timeout. */
function networkReason(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return `no answer within ${ATTEMPT_TIMEOUT_MS} ms`;
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

export function problemText(r: { status: number; body: unknown }): string {
  const b = r.body as { detail?: string; title?: string } | undefined;
  return `HTTP ${r.status}${b?.detail ? `: ${b.detail}` : b?.title ? `: ${b.title}` : ''}`;
}
