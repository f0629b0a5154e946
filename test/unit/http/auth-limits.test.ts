// The per-address limit on failed password checks, with fake time: burst, refill, give-back, and a table that stays bounded.
import { describe, expect, it } from "vitest";
import { addressKey, FailureLimiter } from "../../../src/http/auth-limits.js";

const LIMITS = { burst: 3, refillMs: 1_000, maxAddresses: 4 };

/** Takes until refused; returns how many were admitted. */
function drain(limiter: FailureLimiter, address: string, nowMs: number, max = 100): number {
  let admitted = 0;
  while (admitted < max && limiter.take(address, nowMs).ok) admitted++;
  return admitted;
}

describe("FailureLimiter", () => {
  it("admits a burst, then refuses with the time until the next token, then admits one per refill", () => {
    const limiter = new FailureLimiter(LIMITS);
    expect(drain(limiter, "192.0.2.1", 0)).toBe(3);
    expect(limiter.take("192.0.2.1", 0)).toEqual({ ok: false, retryAfterMs: 1_000 });
    expect(limiter.take("192.0.2.1", 400)).toEqual({ ok: false, retryAfterMs: 600 });
    expect(limiter.take("192.0.2.1", 1_000)).toEqual({ ok: true });
    expect(limiter.take("192.0.2.1", 1_000).ok).toBe(false);
    expect(drain(limiter, "192.0.2.1", 60_000)).toBe(3); // refilled, never above the burst
  });

  it("keeps addresses apart", () => {
    const limiter = new FailureLimiter(LIMITS);
    expect(drain(limiter, "192.0.2.1", 0)).toBe(3);
    expect(drain(limiter, "192.0.2.2", 0)).toBe(3);
  });

  it("a check given back (right password, or not run) does not count", () => {
    const limiter = new FailureLimiter(LIMITS);
    for (let i = 0; i < 10; i++) {
      expect(limiter.take("192.0.2.1", 0).ok).toBe(true);
      limiter.giveBack("192.0.2.1", 0);
    }
    expect(drain(limiter, "192.0.2.1", 0)).toBe(3);
  });

  it("treats an IPv4-mapped address as its IPv4 address, and an IPv6 /64 as one client", () => {
    const limiter = new FailureLimiter(LIMITS);
    expect(drain(limiter, "::ffff:192.0.2.1", 0)).toBe(3);
    expect(limiter.take("192.0.2.1", 0).ok).toBe(false);
    expect(drain(limiter, "2001:db8:1:2::1", 0)).toBe(3);
    expect(limiter.take("2001:db8:1:2:ffff:ffff:ffff:ffff", 0).ok).toBe(false);
    expect(limiter.take("2001:db8:1:3::1", 0).ok).toBe(true);
  });

  it("never remembers more than maxAddresses, however many addresses fail", () => {
    const limiter = new FailureLimiter(LIMITS);
    for (let i = 0; i < 10_000; i++) {
      limiter.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, i);
      expect(limiter.size).toBeLessThanOrEqual(LIMITS.maxAddresses);
    }
  });

  it("a full table of recent failures sends new addresses to one shared bucket: many addresses do not escape the limit", () => {
    const limiter = new FailureLimiter(LIMITS);
    for (let i = 1; i <= 4; i++) expect(drain(limiter, `192.0.2.${i}`, 0)).toBe(3);
    // Every further address shares one bucket of 3 while the table's entries are still draining.
    let admitted = 0;
    for (let i = 5; i < 200; i++) admitted += drain(limiter, `192.0.2.${i}`, 0);
    expect(admitted).toBe(3);
    expect(limiter.size).toBe(4);
    // The four first addresses are still limited: they were not pushed out.
    expect(limiter.take("192.0.2.1", 0).ok).toBe(false);
  });

  it("forgets an address once its bucket has refilled, making room for new ones", () => {
    const limiter = new FailureLimiter(LIMITS);
    for (let i = 1; i <= 4; i++) drain(limiter, `192.0.2.${i}`, 0);
    // 3 s later every bucket is full again: nothing is lost by forgetting them.
    expect(drain(limiter, "198.51.100.1", 3_000)).toBe(3);
    expect(limiter.size).toBe(1);
  });
});

describe("addressKey", () => {
  it.each([
    ["192.0.2.1", "192.0.2.1"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::FFFF:192.0.2.1", "192.0.2.1"],
    ["::1", "0:0:0:0::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0001:0002:0003:0004:0005:0006", "2001:db8:1:2::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["", ""],
  ])("%j → %j", (address, want) => {
    expect(addressKey(address)).toBe(want);
  });
});
