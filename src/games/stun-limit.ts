// A STUN answer goes to whatever source address the request claims, and UDP source addresses
// are trivially spoofed: without a limit, anyone could aim this server's answers at a victim.
// Two token buckets bound what it sends: one per source address (a victim gets at most `burst`
// answers, then `perSecond`), and one for the whole server (however many addresses a flood
// spoofs, the answers per second stay bounded). Pure: the clock is injected.

export interface StunLimits {
  /** Answers one source address gets per second, once its burst is spent. */
  perSecond: number;
  /** Answers one source address may get at once (peers retransmit; several may share a NAT). */
  burst: number;
  /** Answers per second for every address together. */
  totalPerSecond: number;
  /** Source addresses tracked at once; the least recently seen is forgotten past it. */
  maxAddresses: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class StunRateLimiter {
  private readonly addresses = new Map<string, Bucket>();
  private readonly total: Bucket;

  constructor(
    private readonly limits: StunLimits,
    private readonly now: () => number,
  ) {
    this.total = { tokens: limits.totalPerSecond, at: now() };
  }

  /** Whether an answer to `address` may be sent now; takes its token if so. */
  admit(address: string): boolean {
    const at = this.now();
    const bucket = this.addresses.get(address) ?? { tokens: this.limits.burst, at };
    // Moved to the end: the first entry is always the least recently seen.
    this.addresses.delete(address);
    this.addresses.set(address, bucket);
    if (this.addresses.size > this.limits.maxAddresses) this.addresses.delete(this.addresses.keys().next().value!);
    refill(bucket, at, this.limits.perSecond, this.limits.burst);
    refill(this.total, at, this.limits.totalPerSecond, this.limits.totalPerSecond);
    if (bucket.tokens < 1 || this.total.tokens < 1) return false;
    bucket.tokens -= 1;
    this.total.tokens -= 1;
    return true;
  }

  get tracked(): number {
    return this.addresses.size;
  }
}

function refill(bucket: Bucket, at: number, perSecond: number, cap: number): void {
  bucket.tokens = Math.min(cap, bucket.tokens + ((at - bucket.at) / 1000) * perSecond);
  bucket.at = at;
}
