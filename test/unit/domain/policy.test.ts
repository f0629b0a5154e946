// Table tests of the reaping policy: every rule, every boundary, with a fixed clock.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { PolicyConfig } from "../../../src/config/types.js";
import { globMatch } from "../../../src/domain/glob.js";
import { ACTIVE_WINDOW_MS, containersOverShare, decide, ptysPerDevpts, type PolicyInput } from "../../../src/domain/policy.js";
import type { SessionDecision } from "../../../src/domain/snapshot.js";
import type { ClientState, ExecSession, PtyLimits } from "../../../src/domain/types.js";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const S = 1_000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

const POLICY: PolicyConfig = {
  idleTimeout: 4 * H,
  idleIncludesOutput: true,
  maxAge: null,
  minAge: 1 * M,
  pressure: { high: 0.8, low: 0.7, minIdle: 10 * M, containerShare: 0.25 },
  exemptLabel: "ptyreaper.exempt",
  exemptContainers: [],
  exemptNamespaces: [],
  orphanGrace: 2 * M,
};

/** Capacity for containers = max - reserve - 1 = 100: easy pressure arithmetic. */
const CALM: PtyLimits = { allocated: 10, max: 1125, reserve: 1024 };

let seq = 0;
interface Shape {
  idle?: number;
  /** Output more recent than input by this much (mtime later than atime). */
  outputAfter?: number;
  age?: number;
  name?: string;
  labels?: Record<string, string>;
  exemptByEnv?: boolean;
  nsPid?: number;
  id?: string;
  client?: ClientState;
}
function session(shape: Shape = {}): ExecSession {
  const n = ++seq;
  const idle = shape.idle ?? 5 * H;
  const atimeMs = NOW - idle;
  return {
    execId: shape.id ?? `exec-${n}`,
    runtime: "docker",
    containerId: `c${n}`.padEnd(64, "0"),
    containerName: shape.name ?? "web-1",
    containerLabels: shape.labels ?? {},
    pid: 1000 + n,
    startTicks: 5000 + n,
    pidNs: "4026532000",
    nsPid: shape.nsPid ?? 7,
    exemptByEnv: shape.exemptByEnv ?? false,
    ptyKey: `0:50:${n}`,
    devptsDev: "0:50",
    index: n,
    holderPids: [1000 + n],
    startedAtMs: NOW - (shape.age ?? 1 * D),
    atimeMs,
    mtimeMs: atimeMs + (shape.outputAfter ?? 0),
    command: "sh",
    ...(shape.client ? { client: shape.client } : {}),
  };
}

function run(
  sessions: ExecSession[],
  opts: { policy?: Partial<PolicyConfig>; limits?: PtyLimits; docker?: boolean; max?: number } = {},
): SessionDecision[] {
  const input: PolicyInput = { sessions, limits: opts.limits ?? CALM, answered: () => opts.docker ?? true };
  return decide(input, { ...POLICY, ...opts.policy }, opts.max ?? 20, NOW);
}

const one = (shape: Shape, opts?: Parameters<typeof run>[1]): SessionDecision => {
  const d = run([session(shape)], opts)[0];
  if (!d) throw new Error("no decision");
  return d;
};

const stale = (ds: SessionDecision[]): SessionDecision[] => ds.filter((d) => d.state === "stale");

describe("globMatch (exemptContainers patterns)", () => {
  it.each<[string, string, boolean]>([
    ["web", "web", true],
    ["web", "web1", false],
    ["web*", "web", true],
    ["web*", "web-1", true],
    ["*-1", "web-1", true],
    ["*", "", true],
    ["?", "", false],
    ["db?", "db1", true],
    ["db?", "db", false],
    ["a*b*c", "aXXbYYc", true],
    ["a*b*c", "aXXcYYb", false],
    ["**x", "x", true],
    ["w.b", "wxb", false],
    ["?", "😀", true],
    ["[ab]", "a", false],
    ["[ab]", "[ab]", true],
  ])("%j matches %j: %s", (pattern, name, want) => {
    expect(globMatch(pattern, name)).toBe(want);
  });

  it("a pattern that would backtrack exponentially as a regex finishes", () => {
    expect(globMatch("*a*a*a*a*a*a*a*a*b", "a".repeat(5_000))).toBe(false);
  });
});

describe("exemptions", () => {
  it.each<[string, Shape, Partial<PolicyConfig>, string]>([
    ["exempt label true", { labels: { "ptyreaper.exempt": "true" } }, {}, "exempt: label ptyreaper.exempt=true"],
    ["custom exempt label", { labels: { "team/keep": "true" } }, { exemptLabel: "team/keep" }, "exempt: label team/keep=true"],
    [
      "name glob with *",
      { name: "build-42" },
      { exemptContainers: ["db", "build-*"] },
      "exempt: container name build-42 matches exemptContainers build-*",
    ],
    ["name glob with ?", { name: "db1" }, { exemptContainers: ["db?"] }, "matches exemptContainers db?"],
    ["API name with leading slash", { name: "/ci-runner" }, { exemptContainers: ["ci-*"] }, "container name ci-runner"],
    ["PTYREAPER_EXEMPT=1", { exemptByEnv: true }, {}, "exempt: started with PTYREAPER_EXEMPT=1"],
    ["container init (nsPid 1)", { nsPid: 1 }, {}, "exempt: container init (pid 1 in its namespace)"],
    ["exempt even when far past maxAge", { labels: { "ptyreaper.exempt": "true" }, age: 30 * D }, { maxAge: 1 * D }, "label"],
  ])("%s → exempt", (_name, shape, policy, detail) => {
    const d = one({ idle: 30 * D, ...shape }, { policy });
    expect(d.state).toBe("exempt");
    expect(d.reason).toBeNull();
    expect(d.detail).toContain(detail);
  });

  it.each<[string, Shape, Partial<PolicyConfig>]>([
    ["label false", { labels: { "ptyreaper.exempt": "false" } }, {}],
    ["label TRUE (only the exact value true exempts)", { labels: { "ptyreaper.exempt": "TRUE" } }, {}],
    ["label set under another key", { labels: { "other.exempt": "true" } }, {}],
    ["glob matches only the whole name", { name: "mybuild-1" }, { exemptContainers: ["build-*"] }],
    ["? is exactly one character", { name: "db12" }, { exemptContainers: ["db?"] }],
    ["nsPid 2 is not an init", { nsPid: 2 }, {}],
  ])("%s → not exempt (stale by idle)", (_name, shape, policy) => {
    const d = one({ idle: 5 * H, ...shape }, { policy });
    expect(d).toMatchObject({ state: "stale", reason: "idle" });
  });

  it("a container init is never a pressure candidate either", () => {
    const ds = run([session({ nsPid: 1, idle: 20 * D }), session({ idle: 1 * H })], {
      limits: { allocated: 100, max: 1125, reserve: 1024 },
      policy: { idleTimeout: null },
    });
    expect(ds.map((d) => d.state)).toEqual(["exempt", "stale"]);
  });
});

describe("idle, age and states", () => {
  it.each<[string, Shape, Partial<PolicyConfig>, { state: string; reason: string | null; detail?: string }]>([
    ["just under the active window", { idle: ACTIVE_WINDOW_MS - 1 }, {}, { state: "active", reason: null }],
    ["exactly the active window", { idle: ACTIVE_WINDOW_MS }, {}, { state: "idle", reason: null, detail: "idle 1m < idleTimeout 4h" }],
    ["1 ms under idleTimeout", { idle: 4 * H - 1 }, {}, { state: "idle", reason: null, detail: "idle 3h59m < idleTimeout 4h" }],
    ["exactly idleTimeout", { idle: 4 * H }, {}, { state: "stale", reason: "idle", detail: "idle 4h ≥ idleTimeout 4h" }],
    [
      "past idleTimeout, shown rounded down",
      { idle: 4 * H + 12 * M + 37 * S },
      {},
      { state: "stale", reason: "idle", detail: "idle 4h12m ≥ idleTimeout 4h" },
    ],
    [
      "idleTimeout off",
      { idle: 100 * D, age: 101 * D },
      { idleTimeout: null },
      { state: "idle", reason: null, detail: "idle 100d (idleTimeout off)" },
    ],
    [
      "exact config value shown in full",
      { idle: 1 * H },
      { idleTimeout: 1 * H + 30 * M + 10 * S },
      { state: "idle", reason: null, detail: "idle 1h < idleTimeout 1h30m10s" },
    ],
    [
      "exactly maxAge, even while active",
      { idle: 5 * S, age: 1 * D },
      { maxAge: 1 * D },
      { state: "stale", reason: "max_age", detail: "age 1d ≥ maxAge 1d" },
    ],
    ["1 ms under maxAge", { idle: 5 * S, age: 1 * D - 1 }, { maxAge: 1 * D }, { state: "active", reason: null }],
    ["maxAge off", { idle: 5 * S, age: 400 * D }, { maxAge: null }, { state: "active", reason: null }],
    ["max_age wins over idle", { idle: 5 * H, age: 2 * D }, { maxAge: 1 * D }, { state: "stale", reason: "max_age" }],
    [
      "1 ms younger than minAge",
      { idle: 5 * H, age: 1 * M - 1 },
      { idleTimeout: 10 * S },
      { state: "idle", reason: null, detail: "younger than minAge 1m (age 59s)" },
    ],
    ["exactly minAge", { idle: 50 * S, age: 1 * M }, { idleTimeout: 10 * S }, { state: "stale", reason: "idle" }],
    [
      "younger than minAge beats maxAge",
      { idle: 5 * S, age: 30 * S },
      { maxAge: 10 * S, minAge: 1 * M },
      { state: "active", reason: null, detail: "younger than minAge" },
    ],
    ["clock skew: tty time in the future is idle 0", { idle: -10 * M }, {}, { state: "active", reason: null, detail: "idle 0s" }],
  ])("%s", (_name, shape, policy, want) => {
    const d = one(shape, { policy });
    expect(d).toMatchObject({ state: want.state, reason: want.reason });
    if (want.detail) expect(d.detail).toContain(want.detail);
  });

  it.each<[boolean, string, string | null]>([
    [true, "idle", null],
    [false, "stale", "idle"],
  ])("idleIncludesOutput %s: no input for 5h but output 1m ago → %s", (includes, state, reason) => {
    const d = one({ idle: 5 * H, outputAfter: 5 * H - 1 * M }, { policy: { idleIncludesOutput: includes } });
    expect(d).toMatchObject({ state, reason });
  });

  it("docker data unavailable: nothing is stale, exemptions still shown", () => {
    const ds = run([session({ idle: 30 * D }), session({ idle: 5 * S, age: 30 * D }), session({ exemptByEnv: true })], {
      docker: false,
      policy: { maxAge: 1 * D },
      limits: { allocated: 100, max: 1125, reserve: 1024 },
    });
    expect(ds.map((d) => d.state)).toEqual(["idle", "active", "exempt"]);
    expect(ds[0]?.detail).toBe("docker data unavailable: not reaping (idle 30d)");
    expect(ds[1]?.detail).toContain("docker data unavailable: not reaping");
  });
});

describe("orphaned: the client is gone", () => {
  const gone = (agoMs: number): ClientState => ({ state: "gone", sinceMs: NOW - agoMs, detail: "docker CLI pid 4242 exited" });
  const attached: ClientState = { state: "attached", detail: "docker CLI pid 4242" };
  const unknown: ClientState = { state: "unknown", detail: "2 docker CLI clients could have started it (pids 1, 2)" };

  it.each<[string, Shape, Partial<PolicyConfig>, { state: string; reason: string | null; detail?: string }]>([
    [
      "gone exactly the grace, no input as long",
      { client: gone(2 * M), idle: 5 * M },
      {},
      { state: "stale", reason: "orphaned", detail: "client gone 2m ≥ orphanGrace 2m (docker CLI pid 4242 exited); no input for 5m" },
    ],
    [
      "gone 1 ms under the grace",
      { client: gone(2 * M - 1), idle: 5 * M },
      {},
      { state: "idle", reason: null, detail: "client gone (docker CLI pid 4242 exited), within orphanGrace 2m" },
    ],
    ["gone long ago, but input 1 m ago", { client: gone(1 * H), idle: 1 * M }, {}, { state: "idle", reason: null }],
    [
      "gone, no input, but output just now (only input counts)",
      { client: gone(10 * M), idle: 10 * M, outputAfter: 10 * M - 5 * S },
      {},
      { state: "stale", reason: "orphaned" },
    ],
    ["attached and idle for hours", { client: attached, idle: 3 * H }, {}, { state: "idle", reason: null, detail: "idle 3h < idleTimeout 4h" }],
    ["unknown and idle for hours", { client: unknown, idle: 3 * H }, {}, { state: "idle", reason: null }],
    ["unknown falls back to idleTimeout", { client: unknown, idle: 5 * H }, {}, { state: "stale", reason: "idle" }],
    ["no client state at all", { idle: 3 * H }, {}, { state: "idle", reason: null }],
    ["orphanGrace off", { client: gone(1 * D), idle: 3 * H }, { orphanGrace: null }, { state: "idle", reason: null }],
    ["exempt label wins", { client: gone(1 * H), idle: 1 * H, labels: { "ptyreaper.exempt": "true" } }, {}, { state: "exempt", reason: null }],
    ["PTYREAPER_EXEMPT=1 wins", { client: gone(1 * H), idle: 1 * H, exemptByEnv: true }, {}, { state: "exempt", reason: null }],
    [
      "younger than minAge",
      { client: gone(5 * M), idle: 5 * M, age: 30 * S },
      { minAge: 1 * M },
      { state: "idle", reason: null, detail: "younger than minAge" },
    ],
    ["orphaned before idle when both hold", { client: gone(10 * M), idle: 5 * H }, {}, { state: "stale", reason: "orphaned" }],
    ["max_age before orphaned", { client: gone(10 * M), idle: 10 * M, age: 2 * D }, { maxAge: 1 * D }, { state: "stale", reason: "max_age" }],
    [
      "clock skew: gone in the future is gone 0",
      { client: { state: "gone", sinceMs: NOW + 1 * H, detail: "x" }, idle: 1 * H },
      {},
      { state: "idle", reason: null },
    ],
  ])("%s", (_name, shape, policy, want) => {
    const d = one(shape, { policy });
    expect(d).toMatchObject({ state: want.state, reason: want.reason });
    if (want.detail) expect(d.detail).toContain(want.detail);
  });

  it("docker data unavailable: an orphan is not reaped", () => {
    expect(one({ client: gone(1 * H), idle: 1 * H }, { docker: false })).toMatchObject({ state: "idle", reason: null });
  });

  it("maxPerCycle takes orphans before idle sessions, each longest idle first", () => {
    const ds = run(
      [
        session({ idle: 6 * H }),
        session({ client: gone(5 * M), idle: 5 * M }),
        session({ idle: 7 * H }),
        session({ client: gone(1 * H), idle: 1 * H }),
      ],
      { max: 2 },
    );
    expect(ds.map((d) => d.reason)).toEqual([null, "orphaned", null, "orphaned"]);
    expect(ds[0]?.detail).toMatch(/^deferred: maxPerCycle 2 reached; idle 6h/);
  });
});

describe("pressure takes from the tenant holding the most ptys first", () => {
  const noIdle = { idleTimeout: null, pressure: { high: 0.8, low: 0.78, minIdle: 10 * M, containerShare: 0.25 } };
  const inDevpts = (devptsDev: string, shape: Shape): ExecSession => ({ ...session(shape), devptsDev });
  // The hog's devpts holds 60 ptys (its sessions and its own), the neighbour's 2: pressure at 80 of 100.
  const hog = [inDevpts("0:60", { idle: 20 * M }), inDevpts("0:60", { idle: 30 * M })];
  const neighbour = inDevpts("0:61", { idle: 9 * H });
  const counts = new Map([
    ["0:60", 60],
    ["0:61", 2],
  ]);

  it("reaps the hog's sessions before a neighbour's longer-idle one, and says why", () => {
    const input: PolicyInput = {
      sessions: [neighbour, ...hog],
      limits: { allocated: 80, max: 1125, reserve: 1024 },
      answered: () => true,
      ptysPerDevpts: counts,
    };
    const ds = decide(input, { ...POLICY, ...noIdle }, 20, NOW);
    // 80 → low 78: two to take, both the hog's, the 30-minute idle one first.
    expect(ds.map((d) => d.state)).toEqual(["idle", "stale", "stale"]);
    expect(ds[2]?.detail).toContain("its container's devpts 0:60 holds 60, the most first; idle 30m");
  });

  it("takes the neighbour's only once the hog has none left to give", () => {
    const input: PolicyInput = {
      sessions: [neighbour, ...hog],
      limits: { allocated: 82, max: 1125, reserve: 1024 },
      answered: () => true,
      ptysPerDevpts: counts,
    };
    expect(decide(input, { ...POLICY, ...noIdle }, 20, NOW).map((d) => d.reason)).toEqual(["pressure", "pressure", "pressure"]);
  });

  it("without the counts, longest idle first as before", () => {
    const input: PolicyInput = { sessions: [neighbour, ...hog], limits: { allocated: 80, max: 1125, reserve: 1024 }, answered: () => true };
    expect(decide(input, { ...POLICY, ...noIdle }, 20, NOW).map((d) => d.state)).toEqual(["stale", "idle", "stale"]);
  });

  it("counts ptys per devpts instance and names the containers above the share, most first", () => {
    const pty = (devptsDev: string, containerId: string | null, name: string | null = null) => ({
      devptsDev,
      containerId,
      containerName: name,
      runtime: containerId ? ("docker" as const) : null,
    });
    const ptys = [
      ...Array.from({ length: 30 }, () => pty("0:60", "aa", "hog")),
      ...Array.from({ length: 26 }, () => pty("0:62", "cc", "second")),
      ...Array.from({ length: 25 }, () => pty("0:61", "bb", "at-the-share")),
      pty("0:1", null),
    ];
    expect(ptysPerDevpts(ptys)).toEqual(
      new Map([
        ["0:60", 30],
        ["0:62", 26],
        ["0:61", 25],
        ["0:1", 1],
      ]),
    );
    // Capacity 100: 25 is the share itself, not above it.
    expect(containersOverShare(ptys, { allocated: 82, max: 1125, reserve: 1024 }, 0.25)).toEqual([
      { containerId: "aa", containerName: "hog", runtime: "docker", ptys: 30, share: 0.3 },
      { containerId: "cc", containerName: "second", runtime: "docker", ptys: 26, share: 0.26 },
    ]);
    expect(containersOverShare(ptys, { allocated: 0, max: 10, reserve: 10 }, 0.25)).toEqual([]);
  });
});

describe("pressure", () => {
  // Capacity 100, high 0.8 → 80, low 0.7 → 70.
  const limits = (allocated: number): PtyLimits => ({ allocated, max: 1125, reserve: 1024 });
  const idlers = (n: number, idle = 1 * H): ExecSession[] => Array.from({ length: n }, (_, i) => session({ idle: idle + i * M }));
  const noIdle = { idleTimeout: null };

  it.each<[string, number, number, number]>([
    // [name, allocated, sessions available, expected stale]
    ["below high", 79, 30, 0],
    ["exactly high", 80, 30, 10],
    ["above high", 95, 30, 25],
    ["fewer candidates than needed", 95, 4, 4],
    ["at 100%", 100, 40, 30],
  ])("%s: allocated %i of 100 → %i reclaimed", (_name, allocated, n, want) => {
    const ds = run(idlers(n), { limits: limits(allocated), policy: noIdle, max: 1000 });
    expect(stale(ds)).toHaveLength(want);
    for (const d of stale(ds)) expect(d.reason).toBe("pressure");
  });

  it("projected count subtracts sessions already reaped for idle or max_age", () => {
    const idleStale = Array.from({ length: 3 }, () => session({ idle: 10 * H }));
    const ds = run([...idleStale, ...idlers(20)], { limits: limits(85), max: 1000 });
    // 85 - 3 (idle) = 82 → 12 more by pressure reach 70.
    expect(stale(ds).filter((d) => d.reason === "idle")).toHaveLength(3);
    expect(stale(ds).filter((d) => d.reason === "pressure")).toHaveLength(12);
  });

  it("idle stale alone may already bring the count below low: no pressure reaping", () => {
    const idleStale = Array.from({ length: 12 }, () => session({ idle: 10 * H }));
    const ds = run([...idleStale, ...idlers(20)], { limits: limits(81), max: 1000 });
    expect(stale(ds).filter((d) => d.reason === "pressure")).toHaveLength(0);
  });

  it("picks the longest idle first and reports the arithmetic", () => {
    const sessions = [session({ idle: 20 * M }), session({ idle: 3 * H }), session({ idle: 1 * H }), session({ idle: 2 * H })];
    const ds = run(sessions, {
      limits: limits(80),
      policy: { ...noIdle, pressure: { high: 0.8, low: 0.78, minIdle: 10 * M, containerShare: 0.25 } },
    });
    expect(ds.map((d) => d.state)).toEqual(["idle", "stale", "idle", "stale"]);
    expect(ds[1]?.detail).toBe("pressure: 80 of 100 container ptys allocated ≥ high 0.8 (80), reclaiming to low 0.78 (78); idle 3h ≥ minIdle 10m");
  });

  it.each<[string, number, boolean]>([
    ["exactly minIdle", 10 * M, true],
    ["1 ms under minIdle", 10 * M - 1, false],
  ])("%s → candidate %s", (_name, idle, chosen) => {
    const d = one({ idle }, { limits: limits(90), policy: noIdle });
    expect(d.state === "stale").toBe(chosen);
  });

  it("never picks exempt or young sessions", () => {
    const ds = run(
      [session({ exemptByEnv: true, idle: 9 * D }), session({ age: 30 * S, idle: 30 * S }), session({ labels: { "ptyreaper.exempt": "true" } })],
      { limits: limits(100), policy: { ...noIdle, minAge: 1 * M, pressure: { high: 0.8, low: 0.7, minIdle: 10 * S, containerShare: 0.25 } } },
    );
    expect(stale(ds)).toHaveLength(0);
  });

  it("ratios are compared as whole pty counts: 0.56 × 100 triggers at exactly 56", () => {
    // In floating point 0.56 * 100 is 56.00000000000001 and 0.29 * 100 is 28.999999999999996:
    // naive comparisons would miss the high mark and aim one pty too low.
    const ds = run(idlers(40), {
      limits: limits(56),
      max: 1000,
      policy: { ...noIdle, pressure: { high: 0.56, low: 0.29, minIdle: 10 * M, containerShare: 0.25 } },
    });
    expect(stale(ds)).toHaveLength(56 - 29);
    expect(stale(ds)[0]?.detail).toContain("high 0.56 (56), reclaiming to low 0.29 (29)");
  });

  it("no capacity for containers (max <= reserve): no pressure", () => {
    expect(stale(run(idlers(5), { limits: { allocated: 10, max: 1024, reserve: 1024 }, policy: noIdle }))).toHaveLength(0);
  });
});

describe("maxPerCycle", () => {
  it("hundreds of stale sessions: exactly maxPerCycle reaped, longest idle first, the rest deferred", () => {
    const sessions = Array.from({ length: 500 }, (_, i) => session({ idle: 5 * H + ((i * 7919) % 500) * M }));
    const ds = run(sessions, { max: 20 });
    expect(ds).toHaveLength(500);
    const chosen = stale(ds);
    expect(chosen).toHaveLength(20);
    const idleOf = new Map(sessions.map((s) => [s.execId, NOW - s.atimeMs]));
    const chosenIdle = chosen.map((d) => idleOf.get(d.execId) ?? 0);
    const restIdle = ds.filter((d) => d.state !== "stale").map((d) => idleOf.get(d.execId) ?? 0);
    expect(Math.min(...chosenIdle)).toBeGreaterThanOrEqual(Math.max(...restIdle));
    for (const d of ds.filter((x) => x.state !== "stale")) {
      expect(d).toMatchObject({ state: "idle", reason: null });
      expect(d.detail).toMatch(/^deferred: maxPerCycle 20 reached; idle \S+ ≥ idleTimeout 4h$/);
    }
  });

  it("priority: max_age, then idle, then pressure", () => {
    const aged = Array.from({ length: 5 }, () => session({ idle: 30 * S, age: 3 * D }));
    const idle = Array.from({ length: 30 }, (_, i) => session({ idle: 5 * H + i * M }));
    const pressured = Array.from({ length: 10 }, () => session({ idle: 1 * H }));
    const ds = run([...pressured, ...idle, ...aged], { max: 20, policy: { maxAge: 2 * D }, limits: { allocated: 100, max: 1125, reserve: 1024 } });
    const reasons = stale(ds).map((d) => d.reason);
    expect(reasons.filter((r) => r === "max_age")).toHaveLength(5);
    expect(reasons.filter((r) => r === "idle")).toHaveLength(15);
    expect(reasons.filter((r) => r === "pressure")).toHaveLength(0);
    // The 15 idle ones taken are the 15 longest idle.
    const idleIds = new Set(idle.slice(15).map((s) => s.execId));
    for (const d of stale(ds).filter((x) => x.reason === "idle")) expect(idleIds.has(d.execId)).toBe(true);
    // Deferred max_age sessions that are active stay "active"; everything deferred says why.
    const deferred = ds.filter((d) => d.detail.startsWith("deferred: maxPerCycle 20 reached"));
    expect(deferred).toHaveLength(15 + 10);
  });

  it("maxPerCycle 1", () => {
    expect(stale(run([session(), session(), session()], { max: 1 }))).toHaveLength(1);
  });
});

describe("shape of the output", () => {
  it("one decision per session, same order, same ids, even with duplicate ids", () => {
    const sessions = [
      session({ id: "a", idle: 5 * S }),
      session({ id: "b", idle: 9 * H }),
      session({ id: "a", idle: 2 * H }),
      session({ id: "c", exemptByEnv: true }),
    ];
    const ds = run(sessions);
    expect(ds.map((d) => d.execId)).toEqual(["a", "b", "a", "c"]);
    expect(ds.map((d) => d.state)).toEqual(["active", "stale", "idle", "exempt"]);
  });

  it("no sessions, no decisions", () => {
    expect(run([], { limits: { allocated: 4000, max: 4096, reserve: 1024 } })).toEqual([]);
  });

  it("stale decisions carry a reason, others none; every detail is one non-empty line", () => {
    const ds = run([session({ idle: 5 * S }), session({ idle: 9 * H }), session({ nsPid: 1 }), session({ age: 10 * S }), session({ idle: 2 * H })], {
      limits: { allocated: 99, max: 1125, reserve: 1024 },
    });
    for (const d of ds) {
      expect(d.reason !== null).toBe(d.state === "stale");
      expect(d.detail).toMatch(/^[^\n]+$/);
    }
  });
});

describe("invariants over random sessions (fast-check)", () => {
  const shapeArb = fc.record({
    idle: fc.integer({ min: -H, max: 40 * D }),
    outputAfter: fc.integer({ min: 0, max: 40 * D }),
    age: fc.integer({ min: 0, max: 60 * D }),
    labels: fc.constantFrom<Record<string, string>>({}, { "ptyreaper.exempt": "true" }, { "ptyreaper.exempt": "false" }),
    exemptByEnv: fc.boolean(),
    nsPid: fc.constantFrom<number>(1, 2, 40),
    name: fc.constantFrom<string>("web-1", "build-7", "db"),
    client: fc.oneof(
      fc.constant<ClientState>({ state: "attached", detail: "docker CLI pid 9" }),
      fc.constant<ClientState>({ state: "unknown", detail: "no local docker CLI client seen" }),
      fc.integer({ min: -H, max: 40 * D }).map((ago): ClientState => ({ state: "gone", sinceMs: NOW - ago, detail: "docker CLI pid 9 exited" })),
    ),
  });
  const policyArb = fc.record({
    idleTimeout: fc.option(fc.integer({ min: 10 * S, max: 10 * D }), { nil: null }),
    idleIncludesOutput: fc.boolean(),
    maxAge: fc.option(fc.integer({ min: 1 * S, max: 30 * D }), { nil: null }),
    minAge: fc.integer({ min: 0, max: 1 * D }),
    pressure: fc
      .tuple(fc.double({ min: 0.01, max: 1, noNaN: true }), fc.double({ min: 0.01, max: 1, noNaN: true }))
      .filter(([a, b]) => a !== b)
      .map(([a, b]) => ({ high: Math.max(a, b), low: Math.min(a, b), minIdle: 10 * M, containerShare: 0.25 })),
    exemptLabel: fc.constant<string>("ptyreaper.exempt"),
    exemptContainers: fc.constantFrom<string[]>([], ["build-*"], ["d?"]),
    exemptNamespaces: fc.constant<string[]>([]),
    orphanGrace: fc.option(fc.integer({ min: 10 * S, max: 1 * D }), { nil: null }),
  });

  it("never more than maxPerCycle stale; never an exempt, young or init session; nothing without docker", () => {
    fc.assert(
      fc.property(
        fc.array(shapeArb, { maxLength: 60 }),
        policyArb,
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 0, max: 200 }),
        fc.boolean(),
        (shapes, policy, max, allocated, docker) => {
          const sessions = shapes.map((s) => session(s));
          const ds = decide({ sessions, limits: { allocated, max: 1125, reserve: 1024 }, answered: () => docker }, policy, max, NOW);
          expect(ds).toHaveLength(sessions.length);
          const staleOnes = ds.filter((d) => d.state === "stale");
          expect(staleOnes.length).toBeLessThanOrEqual(max);
          if (!docker) expect(staleOnes).toHaveLength(0);
          ds.forEach((d, i) => {
            const s = sessions[i];
            if (!s || d.state !== "stale") return;
            expect(s.nsPid).not.toBe(1);
            expect(s.exemptByEnv).toBe(false);
            expect(s.containerLabels["ptyreaper.exempt"]).not.toBe("true");
            expect(NOW - s.startedAtMs).toBeGreaterThanOrEqual(policy.minAge);
            if (policy.exemptContainers.includes("build-*")) expect(s.containerName).not.toMatch(/^build-/);
            if (d.reason === "orphaned") {
              // Only a gone client, gone and without input at least the grace.
              expect(policy.orphanGrace).not.toBeNull();
              expect(s.client?.state).toBe("gone");
              if (s.client?.state === "gone") expect(NOW - s.client.sinceMs).toBeGreaterThanOrEqual(policy.orphanGrace ?? Infinity);
              expect(NOW - s.atimeMs).toBeGreaterThanOrEqual(policy.orphanGrace ?? Infinity);
            }
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("after a wall-clock step (clockStepHold)", () => {
  const hold = { stepMs: 2 * H, remainingMs: 3 * H };
  const held = (sessions: ExecSession[], opts: { policy?: Partial<PolicyConfig>; limits?: PtyLimits } = {}): SessionDecision[] =>
    decide({ sessions, limits: opts.limits ?? CALM, answered: () => true, clockStepHold: hold }, { ...POLICY, ...opts.policy }, 20, NOW);

  it("idle past idleTimeout is not stale while held, and the detail says why", () => {
    const [d] = held([session({ idle: 5 * H })]);
    expect(d?.state).toBe("idle");
    expect(d?.reason).toBeNull();
    expect(d?.detail).toBe("clock stepped +2h, idle and age reaping held 3h more; idle 5h ≥ idleTimeout 4h");
  });

  it("age past maxAge is not stale while held either, and a backward step reads as negative", () => {
    const [d] = decide(
      {
        sessions: [session({ idle: 5 * M, age: 2 * D })],
        limits: CALM,
        answered: () => true,
        clockStepHold: { stepMs: -90 * M, remainingMs: 10 * M },
      },
      { ...POLICY, maxAge: 1 * D },
      20,
      NOW,
    );
    expect(d?.state).toBe("idle");
    expect(d?.detail).toMatch(/^clock stepped -1h30m, idle and age reaping held 10m more; age 2d ≥ maxAge 1d$/);
  });

  it("without the hold the same sessions are stale (the hold is what changes the verdict)", () => {
    expect(stale(run([session({ idle: 5 * H })]))).toHaveLength(1);
    expect(stale(run([session({ idle: 5 * M, age: 2 * D })], { policy: { maxAge: 1 * D } }))).toHaveLength(1);
  });

  it("pressure reaping goes on: held sessions stay candidates by idle", () => {
    // 85 of 100 allocated, high 80, low 70: 15 to reclaim, only 3 sessions, all held for idle.
    const sessions = [session({ idle: 5 * H }), session({ idle: 6 * H }), session({ idle: 20 * M })];
    const ds = held(sessions, { limits: { allocated: 85, max: 1125, reserve: 1024 } });
    expect(stale(ds).map((d) => d.reason)).toEqual(["pressure", "pressure", "pressure"]);
    expect(stale(ds)[0]?.detail).toMatch(/^pressure: 85 of 100/);
  });
});
