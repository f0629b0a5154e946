// Per-address limit on failed password checks, in a table of bounded size; pure: the caller passes the time.
import { isIPv4, isIPv6 } from "node:net";

export interface FailureLimits {
  /** Failed checks an address may make at once before it waits. */
  burst: number;
  /** One more failed check is allowed every this many ms. */
  refillMs: number;
  /** Addresses remembered at most; beyond, new ones share one bucket (see FailureLimiter). */
  maxAddresses: number;
}

/**
 * 10 at once, then one every 6 s (10 a minute). A person mistyping, or a scraper given a wrong
 * password (its answer is cached after the first check), never reaches it; a guesser gets 10 bcrypt
 * checks a minute per address. 4,096 addresses of ~150 bytes each: under 1 MB.
 */
export const DEFAULT_FAILURE_LIMITS: FailureLimits = { burst: 10, refillMs: 6_000, maxAddresses: 4_096 };

export type Admission = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * A token bucket per client address for the bcrypt checks it may cause. take() before a check
 * reserves one, giveBack() returns it when the check was not a failure (right password, or not run),
 * so concurrent guesses from one address cannot all pass before the first fails.
 *
 * The table is kept in order of last take: an entry whose bucket has refilled is forgotten (it holds
 * nothing a new entry would not), so it is pruned from the front. When the table is still full, a new
 * address shares one overflow bucket with every other address not in it: an attacker with many
 * addresses neither grows the table nor escapes the limit by pushing its own entries out. The pool's
 * cap on compares in flight bounds how fast entries can be drained, so under the default limits the
 * overflow is reached only by a table of addresses each denied within the last minute.
 */
export class FailureLimiter {
  private readonly limits: FailureLimits;
  private readonly table = new Map<string, Bucket>();
  private readonly overflow: Bucket;

  constructor(limits: FailureLimits = DEFAULT_FAILURE_LIMITS) {
    this.limits = limits;
    this.overflow = { tokens: limits.burst, atMs: -Infinity };
  }

  /** Addresses remembered now (for tests and the bound). */
  get size(): number {
    return this.table.size;
  }

  take(address: string, nowMs: number): Admission {
    const key = addressKey(address);
    const bucket = this.bucketFor(key, nowMs);
    this.refill(bucket, nowMs);
    if (bucket.tokens < 1) return { ok: false, retryAfterMs: Math.ceil((1 - bucket.tokens) * this.limits.refillMs) };
    bucket.tokens -= 1;
    bucket.atMs = nowMs;
    if (bucket !== this.overflow) {
      // Last taken goes last: the front is always the entry idle the longest.
      this.table.delete(key);
      this.table.set(key, bucket);
    }
    return { ok: true };
  }

  /** The check that take() admitted was not a failure. */
  giveBack(address: string, nowMs: number): void {
    const key = addressKey(address);
    const bucket = this.table.get(key) ?? this.overflow;
    this.refill(bucket, nowMs);
    bucket.tokens = Math.min(this.limits.burst, bucket.tokens + 1);
  }

  private bucketFor(key: string, nowMs: number): Bucket {
    const known = this.table.get(key);
    if (known) return known;
    this.prune(nowMs);
    if (this.table.size >= this.limits.maxAddresses) return this.overflow;
    const made: Bucket = { tokens: this.limits.burst, atMs: nowMs };
    this.table.set(key, made);
    return made;
  }

  /** Forgets entries from the front while they have refilled: amortised O(1) per take. */
  private prune(nowMs: number): void {
    for (const [key, bucket] of this.table) {
      if (!this.refilled(bucket, nowMs)) return;
      this.table.delete(key);
    }
  }

  private refilled(bucket: Bucket, nowMs: number): boolean {
    return bucket.tokens + (nowMs - bucket.atMs) / this.limits.refillMs >= this.limits.burst;
  }

  private refill(bucket: Bucket, nowMs: number): void {
    if (nowMs <= bucket.atMs) return;
    bucket.tokens = Math.min(this.limits.burst, bucket.tokens + (nowMs - bucket.atMs) / this.limits.refillMs);
    bucket.atMs = nowMs;
  }
}

/**
 * What one client is: an IPv4 address (also when written as IPv4-mapped IPv6), or an IPv6 /64, the
 * smallest network a host is usually given (one host may use any of its 2^64 addresses).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address; // not an IP (a unix socket): kept as is
  const [head = "", tail = ""] = address.toLowerCase().split("%")[0]?.split("::") ?? [];
  const headParts = head === "" ? [] : head.split(":");
  const tailParts = address.includes("::") ? (tail === "" ? [] : tail.split(":")) : [];
  const missing = 8 - headParts.length - tailParts.length;
  const groups = [...headParts, ...Array.from({ length: Math.max(0, missing) }, () => "0"), ...tailParts];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
