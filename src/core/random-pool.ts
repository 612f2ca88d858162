import { randomBytes, randomFillSync } from 'node:crypto';

// Each randomBytes() call goes to OpenSSL's generator on its own, and the first calls after a
// process sat idle cost ~30 µs each here (~6 µs warm); a brokering draws random bytes five times on
// the proxy (two tokens, the challenge, two envelope nonces). Node's randomUUID draws from a pool
// for the same reason. The pool is filled whole from the same CSPRNG; every byte is handed out at
// most once, in order, and wiped from the pool as it goes (tokens are stored hashed: the pool must
// not keep them readable either).

const POOL_BYTES = 4096;
/** Larger requests go to the generator directly: they would drain the pool for one caller. */
const MAX_POOLED_BYTES = 256;

const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let offset = POOL_BYTES;

/** `size` cryptographically strong random bytes, as randomBytes(size) gives them. */
export function secureRandomBytes(size: number): Buffer {
  if (size > MAX_POOLED_BYTES) return randomBytes(size);
  if (offset + size > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + size));
  pool.fill(0, offset, offset + size);
  offset += size;
  return out;
}
