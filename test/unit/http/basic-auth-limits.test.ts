// Basic auth under a password storm, with fake time and a compare we control: what is limited, what is cached, what a cap refusal costs.
import { describe, expect, it } from "vitest";
import { FailureLimiter } from "../../../src/http/auth-limits.js";
import { BcryptBusyError } from "../../../src/http/bcrypt-pool.js";
import { BasicAuth, bcryptCost, unknownUserHash, type AuthVerdict } from "../../../src/http/webconfig.js";

// Shapes only: the compare below decides, never bcrypt.
const COST_10 = `$2b$10$${"a".repeat(53)}`;
const COST_12 = `$2y$12$${"b".repeat(53)}`;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const LIMITS = { burst: 3, refillMs: 1_000, maxAddresses: 16 };

/** A compare that accepts "right" and counts its runs; `busy` makes it refuse as a full pool does. */
function fakeCompare(): { compare: (password: string, hash: string) => Promise<boolean>; runs: string[]; busy: { on: boolean } } {
  const runs: string[] = [];
  const busy = { on: false };
  return {
    runs,
    busy,
    compare: (password, hash) => {
      if (busy.on) return Promise.reject(new BcryptBusyError(4));
      runs.push(hash);
      return Promise.resolve(password === "right");
    },
  };
}

function authWith(users: Record<string, string>, clock: { now: number }) {
  const fake = fakeCompare();
  const auth = new BasicAuth(new Map(Object.entries(users)), fake.compare, { limiter: new FailureLimiter(LIMITS), now: () => clock.now });
  return { auth, ...fake };
}

describe("BasicAuth with a per-address limit", () => {
  it("an address gets `burst` wrong checks, then 429-worthy refusals with a Retry-After, and bcrypt is not run for them", async () => {
    const clock = { now: 0 };
    const { auth, runs } = authWith({ prometheus: COST_10 }, clock);
    const verdicts: AuthVerdict[] = [];
    for (let i = 0; i < 10; i++) verdicts.push(await auth.verify(basic("prometheus", `guess-${i}`), "192.0.2.7"));
    expect(verdicts.slice(0, 3)).toEqual(Array(3).fill({ ok: false, reason: "wrong" }));
    expect(verdicts.slice(3)).toEqual(Array(7).fill({ ok: false, reason: "limited", retryAfterSec: 1 }));
    expect(runs).toHaveLength(3);
    // Another address is not affected; the first gets one more check per refill.
    expect(await auth.verify(basic("prometheus", "guess-x"), "192.0.2.8")).toEqual({ ok: false, reason: "wrong" });
    clock.now = 1_000;
    expect(await auth.verify(basic("prometheus", "guess-y"), "192.0.2.7")).toEqual({ ok: false, reason: "wrong" });
  });

  it("concurrent guesses from one address cannot all pass before the first fails", async () => {
    const { auth, runs } = authWith({ prometheus: COST_10 }, { now: 0 });
    const verdicts = await Promise.all(Array.from({ length: 50 }, (_, i) => auth.verify(basic("prometheus", `g${i}`), "192.0.2.7")));
    expect(runs).toHaveLength(3);
    expect(verdicts.filter((v) => !v.ok && v.reason === "limited")).toHaveLength(47);
  });

  it("credentials already checked are answered from the cache whatever the address's limit: a scraper behind the guesser's NAT keeps its access", async () => {
    const { auth, runs } = authWith({ prometheus: COST_10 }, { now: 0 });
    expect(await auth.verify(basic("prometheus", "right"), "192.0.2.7")).toEqual({ ok: true });
    for (let i = 0; i < 20; i++) await auth.verify(basic("prometheus", `guess-${i}`), "192.0.2.7");
    expect(await auth.verify(basic("prometheus", "right"), "192.0.2.7")).toEqual({ ok: true });
    // 100 more distinct wrong guesses from elsewhere do not push the success out of its cache.
    for (let i = 0; i < 150; i++) await auth.verify(basic("prometheus", `other-${i}`), `198.51.100.${i}`);
    const before = runs.length;
    expect(await auth.verify(basic("prometheus", "right"), "192.0.2.7")).toEqual({ ok: true });
    expect(runs).toHaveLength(before);
  });

  it("a right password does not count against the address", async () => {
    const { auth } = authWith({ a: COST_10, b: COST_10, c: COST_10, d: COST_10 }, { now: 0 });
    for (const user of ["a", "b", "c", "d"]) expect(await auth.verify(basic(user, "right"), "192.0.2.7")).toEqual({ ok: true });
    expect(await auth.verify(basic("a", "wrong"), "192.0.2.7")).toEqual({ ok: false, reason: "wrong" });
  });

  it("over the pool's cap: refused at once (busy, Retry-After 1 s), not remembered, and the address's token is returned", async () => {
    const { auth, runs, busy } = authWith({ prometheus: COST_10 }, { now: 0 });
    busy.on = true;
    for (let i = 0; i < 10; i++)
      expect(await auth.verify(basic("prometheus", "right"), "192.0.2.7")).toEqual({ ok: false, reason: "busy", retryAfterSec: 1 });
    busy.on = false;
    expect(await auth.verify(basic("prometheus", "right"), "192.0.2.7")).toEqual({ ok: true });
    expect(runs).toHaveLength(1);
  });

  it("no credentials cost nothing and are not limited", async () => {
    const { auth, runs } = authWith({ prometheus: COST_10 }, { now: 0 });
    for (let i = 0; i < 20; i++) expect(await auth.verify(undefined, "192.0.2.7")).toEqual({ ok: false, reason: "missing" });
    expect(runs).toHaveLength(0);
  });
});

describe("the unknown user's hash", () => {
  it("has the cost of the most expensive configured hash, and is made anew for each config", () => {
    const { auth, runs } = authWith({ cheap: COST_10, dear: COST_12 }, { now: 0 });
    expect(bcryptCost(auth.dummyHash)).toBe(12);
    void auth.verify(basic("nobody", "x"), "192.0.2.7");
    expect(runs).toEqual([auth.dummyHash]);
    expect(authWith({ dear: COST_12 }, { now: 0 }).auth.dummyHash).not.toBe(auth.dummyHash);
  });

  it.each([4, 10, 12, 31])("unknownUserHash(%i) is a well-formed bcrypt hash of that cost", (cost) => {
    const hash = unknownUserHash(cost);
    expect(hash).toMatch(/^\$2b\$\d\d\$[./A-Za-z0-9]{53}$/);
    expect(bcryptCost(hash)).toBe(cost);
  });
});
