// Config fuzzing (issue 6): arbitrary YAML, values and env never give anything but a ConfigError of one-line problems.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { checkConfigCommand } from "../../../src/cli/check-config.js";
import { parseConfig, withOverrides } from "../../../src/config/load.js";
import { DEFAULT_SETTINGS, LOG_LEVELS, MAX_TIMER_MS, MIN_IDLE_THRESHOLD_MS } from "../../../src/config/schema.js";
import type { Config } from "../../../src/config/types.js";
import { ConfigError } from "../../../src/errors.js";

/** Scale with PTYREAPER_FUZZ_RUNS for a long run; the default keeps the unit suite quick on 2 cores. */
const RUNS = Number(process.env.PTYREAPER_FUZZ_RUNS ?? "") || 1_000;
const SHIPPED_TEXT = toYaml(DEFAULT_SETTINGS);

const tried = { yamlText: 0, tokens: 0, mutations: 0, values: 0, plausible: 0, env: 0, listen: 0, checkConfig: 0, accepted: 0, rejected: 0 };
afterAll(() => {
  const total = Object.entries(tried)
    .filter(([k]) => k !== "accepted" && k !== "rejected")
    .reduce((n, [, v]) => n + v, 0);
  console.log(`config fuzz: ${total} inputs tried ${JSON.stringify(tried)}`);
});

// ---- What every outcome must satisfy

const QUOTED = String.raw`"(?:[^"\\]|\\.)*"`;
const SEGMENT = String.raw`(?:[A-Za-z_]\w*|\[(?:\d+|${QUOTED})\])`;
const KEY_PATH = `${SEGMENT}(?:\\.[A-Za-z_]\\w*|\\[(?:\\d+|${QUOTED})\\])*`;
/** A problem names a key path, the top level, an env variable, --listen, or a YAML position. */
const PROBLEM = new RegExp(
  `^(?:(?:${KEY_PATH}|\\(top level\\)|PTYREAPER_[A-Z_]+|DOCKER_HOST|--listen): \\S|(?:line \\d+, column \\d+: )?invalid YAML: \\S|\\(\\d+ more problems not shown\\)$)`,
);
// eslint-disable-next-line no-control-regex
const NOT_ONE_LINE = /[\u0000-\u001f\u007f\u0085\u2028\u2029]/;

function expectOneLineProblems(problems: readonly string[]): void {
  expect(problems.length).toBeGreaterThanOrEqual(1);
  for (const p of problems) {
    expect(typeof p).toBe("string");
    expect(p, JSON.stringify(p)).not.toMatch(NOT_ONE_LINE);
    expect(p, JSON.stringify(p)).toMatch(PROBLEM);
    expect(p).not.toMatch(/\bat .*\.(?:ts|js):\d+/);
    expect(p.length).toBeLessThan(600);
  }
}

function isDeepFrozen(v: unknown): boolean {
  if (typeof v !== "object" || v === null) return true;
  return Object.isFrozen(v) && Object.values(v).every(isDeepFrozen);
}

function expectInvariants(c: Config): void {
  expect(isDeepFrozen(c)).toBe(true);
  const { policy: p } = c;
  expect(p.pressure.low).toBeGreaterThan(0);
  expect(p.pressure.high).toBeLessThanOrEqual(1);
  expect(p.pressure.low).toBeLessThan(p.pressure.high);
  expect(c.pollInterval).toBeGreaterThanOrEqual(1_000);
  expect(c.pollInterval).toBeLessThanOrEqual(MAX_TIMER_MS);
  expect(c.reaper.grace).toBeGreaterThanOrEqual(100);
  expect(c.reaper.grace).toBeLessThanOrEqual(MAX_TIMER_MS);
  expect(c.docker.timeout).toBeGreaterThanOrEqual(100);
  expect(c.docker.timeout).toBeLessThanOrEqual(MAX_TIMER_MS);
  if (p.idleTimeout !== null) expect(p.idleTimeout).toBeGreaterThanOrEqual(MIN_IDLE_THRESHOLD_MS);
  expect(p.pressure.minIdle).toBeGreaterThanOrEqual(MIN_IDLE_THRESHOLD_MS);
  expect(p.minAge).toBeGreaterThanOrEqual(0);
  if (p.maxAge !== null) expect(p.maxAge).toBeGreaterThanOrEqual(p.minAge);
  for (const ms of [c.pollInterval, c.reaper.grace, c.docker.timeout, p.minAge, p.pressure.minIdle, p.idleTimeout ?? 0, p.maxAge ?? 0]) {
    expect(Number.isSafeInteger(ms)).toBe(true);
  }
  expect(Number.isSafeInteger(c.reaper.maxPerCycle) && c.reaper.maxPerCycle >= 1).toBe(true);
  expect(Number.isInteger(c.listen.port) && c.listen.port >= 0 && c.listen.port <= 65_535).toBe(true);
  expect(c.listen.host.length).toBeGreaterThan(0);
  expect(c.procRoot.startsWith("/")).toBe(true);
  expect(c.docker.socket.startsWith("/")).toBe(true);
  expect([true, false, "auto"]).toContain(c.docker.enabled);
  expect(typeof p.idleIncludesOutput).toBe("boolean");
  expect(["enforce", "dry-run"]).toContain(c.reaper.mode);
  expect(LOG_LEVELS).toContain(c.log.level);
  expect(p.exemptLabel.length).toBeGreaterThan(0);
  for (const g of p.exemptContainers) expect(g).toMatch(/^[A-Za-z0-9_.\-*?]+$/);
}

/** Parses and checks the outcome; anything thrown other than a ConfigError fails the property. */
function outcome(text: string, env: Record<string, string | undefined> = {}): void {
  let config: Config;
  try {
    config = parseConfig(text, "fuzz.yaml", env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError for ${JSON.stringify(text)}: ${String(err)}`, { cause: err });
    tried.rejected++;
    expectOneLineProblems(err.problems);
    return;
  }
  tried.accepted++;
  expectInvariants(config);
}

// ---- Generators

function keyPaths(node: unknown, prefix: string[] = []): string[][] {
  if (typeof node !== "object" || node === null || Array.isArray(node)) return [];
  return Object.entries(node).flatMap(([k, v]) => [[...prefix, k], ...keyPaths(v, [...prefix, k])]);
}
const KNOWN_PATHS = keyPaths(DEFAULT_SETTINGS);

const durationish = fc
  .tuple(
    fc.oneof(
      fc.nat().map(String),
      fc.integer({ min: -5, max: 5 }).map(String),
      fc.double().map(String),
      fc.constantFrom("1e400", "0.0001", "1.", ".5"),
    ),
    fc.constantFrom("ms", "s", "m", "h", "d", "", "w", "S", " s", "m30s", "h1h"),
  )
  .map(([n, u]) => `${n}${u}`);

const special = fc.constantFrom<unknown>(
  "off",
  "on",
  "yes",
  "no",
  "~",
  "",
  " ",
  "null",
  "true",
  "0",
  "-0",
  ".inf",
  "-.inf",
  ".nan",
  "0x10",
  "1e400",
  Number.NaN,
  Infinity,
  -Infinity,
  -0,
  0,
  1,
  0.8,
  0.7,
  1.0000001,
  Number.MAX_SAFE_INTEGER + 2,
  2 ** 31,
  -1,
  "127.0.0.1:9724",
  "[::1]:9724",
  "::1",
  "[::1]",
  "host:",
  ":80",
  "a:b:c",
  "[fe80::1%eth0]:1",
  "localhost:65535",
  "/proc",
  "proc",
  "/",
  "//",
  "/a/../..",
  "unix:///x",
  "\u0000",
  "\n",
  "\u2028",
  "\u202e",
  "é",
  "😀",
  "a".repeat(5000),
  "build-*",
  "*",
  "?",
  "[ab]",
  "dry-run",
  "enforce",
  "info",
  "silent",
  "__proto__",
  "constructor",
  "toString",
  [],
  {},
  [[]],
  [{}],
  { a: 1 },
  ["a", 1, null],
);

const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 3, arbitrary: special },
  { weight: 2, arbitrary: durationish },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.array(fc.oneof(fc.string(), fc.integer(), special), { maxLength: 4 }) },
);

const unknownKey = fc.oneof(
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("idelTimeout", "idle_timeout", "IdleTimeout", "mode", "level", "socket", "__proto__", "constructor", "prototype", "0", ""),
);
const keyPath = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN_PATHS) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom([], ...KNOWN_PATHS), unknownKey).map(([p, k]) => [...p, k]) },
);

function setAt(root: Record<string, unknown>, path: readonly string[], v: unknown): void {
  let node = root;
  path.forEach((seg, i) => {
    if (i === path.length - 1) {
      Object.defineProperty(node, seg, { value: v, enumerable: true, writable: true, configurable: true });
      return;
    }
    const next = Object.hasOwn(node, seg) ? node[seg] : undefined;
    const child = typeof next === "object" && next !== null && !Array.isArray(next) ? (next as Record<string, unknown>) : {};
    Object.defineProperty(node, seg, { value: child, enumerable: true, writable: true, configurable: true });
    node = child;
  });
}

/** A document built from the defaults (or from nothing) with values set at arbitrary key paths. */
const documentWithValues = fc.tuple(fc.boolean(), fc.array(fc.tuple(keyPath, value), { minLength: 1, maxLength: 6 })).map(([fromDefaults, edits]) => {
  const doc = fromDefaults ? (structuredClone(DEFAULT_SETTINGS) as unknown as Record<string, unknown>) : {};
  for (const [path, v] of edits) setAt(doc, path, v);
  return doc;
});

/** Values that often pass alone, so that cross-key rules and the invariants of accepted configs get exercised. */
const goodDuration = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("10s", "30s", "1m", "10m", "1h30m", "4h", "1d") },
  { weight: 1, arbitrary: fc.constantFrom("0s", "100ms", "999ms", "1s", "9s", "24d", "25d", "off") },
);
const ratio = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: 0.01, max: 1, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1.01, -0) },
);
const plausibleDocument = fc.record(
  {
    pollInterval: goodDuration,
    listen: fc.constantFrom("127.0.0.1:9724", "[::1]:0", "0.0.0.0:65535", "localhost:80"),
    docker: fc.record({ enabled: fc.boolean(), timeout: goodDuration }, { requiredKeys: [] }),
    policy: fc.record(
      {
        idleTimeout: goodDuration,
        idleIncludesOutput: fc.boolean(),
        maxAge: goodDuration,
        minAge: goodDuration,
        pressure: fc.record({ high: ratio, low: ratio, minIdle: goodDuration }, { requiredKeys: [] }),
        exemptContainers: fc.array(fc.constantFrom("build-*", "db?", "*", "x"), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    reaper: fc.record(
      {
        mode: fc.constantFrom("enforce", "dry-run"),
        grace: goodDuration,
        maxPerCycle: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.constantFrom(0, -1, 1.5)),
      },
      { requiredKeys: [] },
    ),
    log: fc.record({ level: fc.constantFrom(...LOG_LEVELS) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

const TOKENS = [
  "pollInterval",
  "listen",
  "procRoot",
  "docker",
  "enabled",
  "socket",
  "timeout",
  "policy",
  "idleTimeout",
  "idleIncludesOutput",
  "maxAge",
  "minAge",
  "pressure",
  "high",
  "low",
  "minIdle",
  "exemptLabel",
  "exemptContainers",
  "reaper",
  "mode",
  "grace",
  "maxPerCycle",
  "log",
  "level",
  ":",
  ": ",
  " ",
  "  ",
  "\n",
  "\n  ",
  "\n    ",
  "- ",
  ",",
  "[",
  "]",
  "{",
  "}",
  "&a ",
  "*a",
  "!!str ",
  "!!int ",
  "!!map ",
  "!foo ",
  '"',
  "'",
  "#",
  "---\n",
  "...\n",
  "? ",
  "| ",
  "> ",
  "%YAML 1.2\n",
  "%TAG ! tag:x:\n",
  "<<: ",
  "10s",
  "off",
  "4h",
  "0.8",
  "0.7",
  ".nan",
  "true",
  "null",
  "~",
  "1e400",
  "\t",
  "\r\n",
  "\u0000",
  "\uFEFF",
  "é",
  "😀",
  "\\",
  "@",
  "`",
  "=",
];
const tokenText = fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((t) => t.join(""));

/** The defaults as YAML with a few random edits: near-valid files exercise the deepest code. */
const mutatedText = fc
  .array(fc.tuple(fc.nat(), fc.nat({ max: 12 }), fc.oneof(fc.constantFrom(...TOKENS), fc.string({ unit: "binary", maxLength: 6 }))), {
    minLength: 1,
    maxLength: 4,
  })
  .map((edits) =>
    edits.reduce((text, [at, del, ins]) => {
      const i = at % (text.length + 1);
      return text.slice(0, i) + ins + text.slice(i + del);
    }, SHIPPED_TEXT),
  );

const ENV_NAMES = ["PTYREAPER_LISTEN", "PTYREAPER_POLL_INTERVAL", "PTYREAPER_LOG_LEVEL", "PTYREAPER_MODE", "PTYREAPER_PROC_ROOT", "DOCKER_HOST"];
const envValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 30 }),
  durationish,
  special.filter((v): v is string => typeof v === "string"),
  fc.constantFrom("unix:///run/docker.sock", "tcp://1.2.3.4:2375", "unix://", "unix:///", "ssh://h", "npipe:////./pipe/x", "dry-run", "debug"),
);
const env = fc.dictionary(fc.constantFrom(...ENV_NAMES), envValue, { maxKeys: 6 });

// ---- Properties

describe("config fuzzing", () => {
  it("arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (text) => {
        tried.yamlText++;
        outcome(text);
      }),
      { numRuns: RUNS },
    );
  });

  it("YAML-shaped token soup", () => {
    fc.assert(
      fc.property(tokenText, (text) => {
        tried.tokens++;
        outcome(text);
      }),
      { numRuns: RUNS },
    );
  });

  it("the default config with random edits", () => {
    fc.assert(
      fc.property(mutatedText, (text) => {
        tried.mutations++;
        outcome(text);
      }),
      { numRuns: RUNS },
    );
  });

  it("arbitrary values at arbitrary key paths", () => {
    fc.assert(
      fc.property(documentWithValues, fc.boolean(), (doc, flow) => {
        tried.values++;
        outcome(toYaml(doc, flow ? { collectionStyle: "flow" } : {}));
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("plausible values: accepted ones keep every invariant, cross-key rules hold", () => {
    fc.assert(
      fc.property(plausibleDocument, env, fc.boolean(), (doc, e, withEnv) => {
        tried.plausible++;
        outcome(toYaml(doc), withEnv ? e : {});
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("arbitrary environment over arbitrary values", () => {
    fc.assert(
      fc.property(documentWithValues, env, (doc, e) => {
        tried.env++;
        outcome(toYaml(doc), e);
      }),
      { numRuns: RUNS },
    );
  });

  it("arbitrary --listen and --dry-run", () => {
    const base = parseConfig("", "f", {});
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 40 }),
          special.filter((v): v is string => typeof v === "string"),
        ),
        fc.boolean(),
        (listen, dryRun) => {
          tried.listen++;
          try {
            const c = withOverrides(base, { listen, dryRun });
            expectInvariants(c);
            expect(c.reaper.mode).toBe(dryRun ? "dry-run" : "enforce");
          } catch (err) {
            if (!(err instanceof ConfigError)) throw err;
            expectOneLineProblems(err.problems);
            expect(err.problems[0]).toMatch(/^--listen: /);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("the generators reach both outcomes", () => {
    // A sanity anchor for the generators: some fuzzed documents must be accepted, many rejected.
    expect(tried.accepted).toBeGreaterThan(0);
    expect(tried.rejected).toBeGreaterThan(0);
  });
});

describe("check-config on fuzzed files", () => {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-fuzz-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("exit 0 with FILE: ok, or exit 78 with one `FILE: problem` line each on stderr", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          tokenText,
          mutatedText,
          documentWithValues.map((d) => toYaml(d)),
          fc.string({ unit: "binary", maxLength: 200 }),
        ),
        env,
        async (text, e) => {
          tried.checkConfig++;
          const name = `f${n++}.yaml`;
          writeFileSync(join(dir, name), text);
          let out = "";
          let err = "";
          const code = await checkConfigCommand([name], { stdout: (t) => (out += t), stderr: (t) => (err += t), env: e, cwd: dir });
          expect([0, 78]).toContain(code);
          if (code === 0) {
            expect(err).toBe("");
            expect(out.startsWith(`${name}: ok\n`)).toBe(true);
          } else {
            expect(out).toBe("");
            expect(err.endsWith("\n")).toBe(true);
            const lines = err.slice(0, -1).split("\n");
            for (const line of lines) {
              // A file that is not UTF-8 cannot be read: the one case without the FILE prefix.
              if (line.startsWith("cannot read config ")) {
                expect(line).toMatch(/: not UTF-8 text$/);
                continue;
              }
              // A bad variable is the environment's problem, not the file's.
              const prefix = line.startsWith("environment: ") ? "environment: " : `${name}: `;
              expect(line.startsWith(prefix)).toBe(true);
            }
            expectOneLineProblems(
              lines
                .filter((l) => !l.startsWith("cannot read"))
                .map((l) => (l.startsWith("environment: ") ? l.slice("environment: ".length) : l.slice(name.length + 2))),
            );
          }
        },
      ),
      { numRuns: Math.max(100, Math.floor(RUNS / 3)) },
    );
  });
});
