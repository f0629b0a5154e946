// The bcrypt worker pool with real threads (the build's copy, as the scan worker): right answers, the cap, and unknown-vs-known timing.
import { afterEach, describe, expect, it } from "vitest";
import bcrypt from "bcryptjs";
import { BcryptBusyError, BcryptPool } from "../../../src/http/bcrypt-pool.js";
import { BasicAuth } from "../../../src/http/webconfig.js";

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

let pool: BcryptPool | null = null;
afterEach(async () => {
  await pool?.close();
  pool = null;
});

describe("BcryptPool", () => {
  it("answers as bcryptjs does, off the main thread", async () => {
    pool = new BcryptPool();
    const hash = bcrypt.hashSync("s3cret", 4);
    expect(await pool.compare("s3cret", hash)).toBe(true);
    expect(await pool.compare("s3cret!", hash)).toBe(false);
    // A timer keeps firing while a cost-12 compare (~0.4 s in bcryptjs) runs on the thread.
    const slow = bcrypt.hashSync("x", 12);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    try {
      expect(await pool.compare("y", slow)).toBe(false);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(5);
  });

  it("runs at most maxInFlight compares; the rest fail at once with BcryptBusyError, and room comes back", async () => {
    const capped = new BcryptPool({ maxInFlight: 2 });
    pool = capped;
    const hash = bcrypt.hashSync("s3cret", 8);
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => capped.compare("s3cret", hash)));
    expect(outcomes.filter((o) => o.status === "fulfilled").map((o) => o.value)).toEqual([true, true]);
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
    expect(refused).toHaveLength(4);
    for (const r of refused) expect(r.reason).toBeInstanceOf(BcryptBusyError);
    expect((refused[0]?.reason as BcryptBusyError).code).toBe("PTYR_AUTH_BUSY");
    expect(await capped.compare("s3cret", hash)).toBe(true);
  });
});

describe("BcryptPool idle threads", () => {
  it("ends a thread idle for idleMs (its memory goes back) and starts one again for the next compare", async () => {
    const idle = new BcryptPool({ idleMs: 50 });
    pool = idle;
    const hash = bcrypt.hashSync("s3cret", 4);
    expect(idle.threadsRunning).toBe(0); // none before the first compare
    expect(await idle.compare("s3cret", hash)).toBe(true);
    expect(idle.threadsRunning).toBe(1);
    const deadline = Date.now() + 5_000;
    while (idle.threadsRunning > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(idle.threadsRunning).toBe(0);
    expect(await idle.compare("nope", hash)).toBe(false);
    expect(idle.threadsRunning).toBe(1);
  });
});

describe("unknown user vs known user with a wrong password (real bcrypt on the pool's thread)", () => {
  /** Median ms of one verify, each with a fresh password so nothing is cached. */
  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] as number;
  };

  it("take the same time within noise (medians within 25 %), while a cheaper user's wrong password is told apart", async () => {
    pool = new BcryptPool();
    const p = pool;
    // The dear user sets the unknown user's cost; the cheap one shows the comparison can tell costs apart.
    const auth = new BasicAuth(
      new Map([
        ["dear", bcrypt.hashSync("right", 11)],
        ["cheap", bcrypt.hashSync("right", 10)],
      ]),
      (password, hash) => p.compare(password, hash),
    );
    const times = { unknown: [] as number[], dear: [] as number[], cheap: [] as number[] };
    const TRIES = 9;
    for (let i = 0; i < TRIES; i++) {
      // Interleaved, so load from the other engineers' work on this host falls on all three alike.
      for (const who of ["unknown", "dear", "cheap"] as const) {
        const user = who === "unknown" ? `nobody-${i}` : who;
        const started = performance.now();
        expect(await auth.check(basic(user, `wrong-${i}`))).toBe(false);
        times[who].push(performance.now() - started);
      }
    }
    const m = { unknown: median(times.unknown), dear: median(times.dear), cheap: median(times.cheap) };
    console.log(
      `bcrypt timing, medians of ${TRIES}: unknown user ${m.unknown.toFixed(1)} ms, known user (cost 11) ${m.dear.toFixed(1)} ms, cost-10 user ${m.cheap.toFixed(1)} ms`,
    );
    expect(Math.abs(m.unknown - m.dear) / m.dear).toBeLessThan(0.25);
    // Cost 10 is half the work of cost 11: the same comparison would catch a dummy hash of the wrong cost.
    expect(m.cheap / m.unknown).toBeLessThan(0.75);
  }, 60_000);
});

describe("BcryptPool without a thread script", () => {
  it("fails the compare (a promise, never a throw) and frees its slot", async () => {
    const broken = new BcryptPool({ maxInFlight: 1, workerUrl: new URL("file:///nonexistent/ptyreaper-bcrypt.js") });
    pool = broken;
    for (let i = 0; i < 3; i++) {
      const outcome = await broken.compare("x", "y").then(
        () => "resolved",
        (err: unknown) => err,
      );
      expect(outcome).toBeInstanceOf(Error);
      expect(outcome).not.toBeInstanceOf(BcryptBusyError);
    }
  });
});
