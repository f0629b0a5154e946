// Config loading: defaults, every key's validation, env and flag overrides, one line per problem, frozen results.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { appliedOverrides, configPathFor, defaultConfig, loadConfig, parseConfig, withOverrides } from "../../../src/config/load.js";
import { DEFAULT_SETTINGS, ENV_OVERRIDES } from "../../../src/config/schema.js";
import type { Config } from "../../../src/config/types.js";
import { ConfigError, PtyreaperError } from "../../../src/errors.js";

const SHIPPED = new URL("../../../config/ptyreaper.yaml", import.meta.url);

const DEFAULTS: Config = {
  pollInterval: 10_000,
  fullScanInterval: 600_000,
  listen: { host: "127.0.0.1", port: 9724 },
  procRoot: "/proc",
  stateDir: "/var/lib/ptyreaper",
  docker: { enabled: true, socket: "/var/run/docker.sock", timeout: 5_000 },
  runtimes: {
    containerd: { enabled: "auto", socket: "/run/containerd/containerd.sock", namespaces: ["k8s.io"], timeout: 5_000 },
    podman: { enabled: "auto", socket: "/run/podman/podman.sock", timeout: 5_000 },
  },
  policy: {
    idleTimeout: 4 * 3_600_000,
    idleIncludesOutput: true,
    maxAge: null,
    minAge: 60_000,
    pressure: { high: 0.8, low: 0.7, minIdle: 600_000, containerShare: 0.25 },
    exemptLabel: "ptyreaper.exempt",
    exemptContainers: [],
    exemptNamespaces: [],
    orphanGrace: 120_000,
  },
  reaper: { mode: "enforce", grace: 10_000, maxPerCycle: 20 },
  log: { level: "info" },
  commandLine: "argv0",
  webConfigFile: null,
  masterOnlyGrace: 300_000,
  http: { sessions: true, healthListen: null },
};

/** The problems of a rejected config, or a failure if it was accepted or failed otherwise. */
function problemsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(text, "test.yaml", env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error(`accepted: ${text}`);
}

function isDeepFrozen(v: unknown): boolean {
  if (typeof v !== "object" || v === null) return true;
  return Object.isFrozen(v) && Object.values(v).every(isDeepFrozen);
}

describe("defaults", () => {
  it.each([
    ["an empty file", ""],
    ["only comments", "# nothing here\n"],
    ["an empty document marker", "---\n"],
    ["empty sections", "docker:\npolicy:\n  pressure:\nreaper: {}\nlog:\n"],
  ])("%s gives every default", (_name, text) => {
    expect(parseConfig(text, "f", {})).toEqual(DEFAULTS);
  });

  it("defaultConfig() and loadConfig(null) without env are the defaults", () => {
    expect(defaultConfig()).toEqual(DEFAULTS);
    expect(loadConfig(null, {})).toEqual(DEFAULTS);
  });

  it("the shipped config/ptyreaper.yaml parses to exactly the defaults", () => {
    expect(loadConfig(SHIPPED.pathname, {})).toEqual(DEFAULTS);
  });

  it("the shipped file names every key of the schema, with a comment on each leaf", () => {
    const text = readFileSync(SHIPPED, "utf8");
    const keys = (o: object, prefix = ""): string[] =>
      Object.entries(o).flatMap(([k, v]) =>
        typeof v === "object" && v !== null && !Array.isArray(v) ? keys(v as object, `${prefix}${k}.`) : [`${prefix}${k}`],
      );
    expect(keys(parseYaml(text) as object).sort()).toEqual(keys(DEFAULT_SETTINGS).sort());
    for (const line of text.split("\n")) {
      if (/^\s*\w+: \S/.test(line)) expect(line, line).toMatch(/ # \S/);
    }
  });

  it("results are deep-frozen", () => {
    const c = parseConfig("policy: {exemptContainers: [a]}\n", "f", {});
    expect(isDeepFrozen(c)).toBe(true);
    expect(() => {
      c.policy.exemptContainers.push("b");
    }).toThrow(TypeError);
  });
});

describe("values accepted and normalised", () => {
  it.each<[string, string, (c: Config) => unknown, unknown]>([
    ["pollInterval", "pollInterval: 1s", (c) => c.pollInterval, 1_000],
    ["pollInterval combo", "pollInterval: 1m30s", (c) => c.pollInterval, 90_000],
    ["listen IPv4", "listen: 0.0.0.0:80", (c) => c.listen, { host: "0.0.0.0", port: 80 }],
    ["listen IPv6", "listen: '[::1]:9724'", (c) => c.listen, { host: "::1", port: 9724 }],
    ["listen host name", "listen: localhost:9100", (c) => c.listen, { host: "localhost", port: 9100 }],
    ["listen port 0 (a free port)", "listen: 127.0.0.1:0", (c) => c.listen.port, 0],
    ["procRoot trailing slash", "procRoot: /host/proc/", (c) => c.procRoot, "/host/proc"],
    ["docker disabled", "docker: {enabled: false}", (c) => c.docker.enabled, false],
    ["docker auto", "docker: {enabled: auto}", (c) => c.docker.enabled, "auto"],
    ["docker socket", "docker: {socket: /run/docker.sock}", (c) => c.docker.socket, "/run/docker.sock"],
    ["docker timeout", "docker: {timeout: 250ms}", (c) => c.docker.timeout, 250],
    ["containerd required", "runtimes: {containerd: {enabled: true}}", (c) => c.runtimes.containerd.enabled, true],
    ["containerd off", "runtimes: {containerd: {enabled: false}}", (c) => c.runtimes.containerd.enabled, false],
    [
      "containerd namespaces",
      "runtimes: {containerd: {namespaces: [k8s.io, builds-2]}}",
      (c) => c.runtimes.containerd.namespaces,
      ["k8s.io", "builds-2"],
    ],
    [
      "containerd socket",
      "runtimes: {containerd: {socket: /run/k3s/containerd/containerd.sock}}",
      (c) => c.runtimes.containerd.socket,
      "/run/k3s/containerd/containerd.sock",
    ],
    [
      "podman socket and timeout",
      "runtimes: {podman: {socket: /run/user/0/podman/podman.sock, timeout: 2s}}",
      (c) => c.runtimes.podman,
      { enabled: "auto", socket: "/run/user/0/podman/podman.sock", timeout: 2_000 },
    ],
    [
      "moby namespace once Docker is off",
      "docker: {enabled: false}\nruntimes: {containerd: {namespaces: [moby]}}",
      (c) => c.runtimes.containerd.namespaces,
      ["moby"],
    ],
    ["empty runtimes sections", "runtimes:\n  containerd:\n  podman:\n", (c) => c.runtimes, DEFAULTS.runtimes],
    ["idleTimeout off", "policy: {idleTimeout: off}", (c) => c.policy.idleTimeout, null],
    ["idleTimeout exactly 10s", "policy: {idleTimeout: 10s}", (c) => c.policy.idleTimeout, 10_000],
    ["idleIncludesOutput", "policy: {idleIncludesOutput: false}", (c) => c.policy.idleIncludesOutput, false],
    ["maxAge", "policy: {maxAge: 1d}", (c) => c.policy.maxAge, 86_400_000],
    ["minAge 0s", "policy: {minAge: 0s}", (c) => c.policy.minAge, 0],
    [
      "pressure",
      "policy: {pressure: {high: 1, low: 0.01, minIdle: 10s, containerShare: 0.5}}",
      (c) => c.policy.pressure,
      { high: 1, low: 0.01, minIdle: 10_000, containerShare: 0.5 },
    ],
    ["exemptLabel", "policy: {exemptLabel: com.example/keep}", (c) => c.policy.exemptLabel, "com.example/keep"],
    ["exemptContainers", "policy: {exemptContainers: ['build-*', '/db?']}", (c) => c.policy.exemptContainers, ["build-*", "db?"]],
    ["exemptContainers null", "policy: {exemptContainers: }", (c) => c.policy.exemptContainers, []],
    ["mode dry-run", "reaper: {mode: dry-run}", (c) => c.reaper.mode, "dry-run"],
    ["grace", "reaper: {grace: 2s}", (c) => c.reaper.grace, 2_000],
    ["masterOnlyGrace", "masterOnlyGrace: 90s", (c) => c.masterOnlyGrace, 90_000],
    ["maxPerCycle", "reaper: {maxPerCycle: 1}", (c) => c.reaper.maxPerCycle, 1],
    ["log level", "log: {level: debug}", (c) => c.log.level, "debug"],
    ["a BOM at the start", "\uFEFFpollInterval: 2s", (c) => c.pollInterval, 2_000],
    ["anchors and aliases", "docker: &d {timeout: 2s}\n", (c) => c.docker.timeout, 2_000],
  ])("%s", (_name, text, get, want) => {
    expect(get(parseConfig(`${text}\n`, "f", {}))).toEqual(want);
  });
});

describe("problems: one line each, naming the key and what was expected", () => {
  it.each<[string, string, string]>([
    ["the brief's example", "policy: {idleTimeout: soon}", `policy.idleTimeout: expected a duration like "30s", "10m", "4h" or "off", got "soon"`],
    ["a bare number", "pollInterval: 10", `pollInterval: expected a duration like "30s", "10m" or "4h", got 10: add a unit, e.g. "10s"`],
    [
      "off where not allowed",
      "pollInterval: off",
      `pollInterval: expected a duration like "30s", "10m" or "4h" ("off" is not allowed here), got "off"`,
    ],
    [
      "off for minAge",
      "policy: {minAge: off}",
      `policy.minAge: expected a duration like "30s", "10m" or "4h" ("off" is not allowed here), got "off"`,
    ],
    ["pollInterval under 1s", "pollInterval: 999ms", `pollInterval: expected at least 1s, got "999ms"`],
    [
      "pollInterval over the timer limit",
      "pollInterval: 25d",
      `pollInterval: expected at most 24d20h31m23s647ms (a timer cannot wait longer), got "25d"`,
    ],
    ["idleTimeout under 10s", "policy: {idleTimeout: 9s}", `policy.idleTimeout: expected at least 10s (tty times move in 8-second steps), got "9s"`],
    [
      "minIdle under 10s",
      "policy: {pressure: {minIdle: 5s}}",
      `policy.pressure.minIdle: expected at least 10s (tty times move in 8-second steps), got "5s"`,
    ],
    ["grace too short", "reaper: {grace: 10ms}", `reaper.grace: expected at least 100ms, got "10ms"`],
    [
      "masterOnlyGrace too short",
      "masterOnlyGrace: 500ms",
      `masterOnlyGrace: expected at least 1s (a runtime closes an ended exec's master within moments), got "500ms"`,
    ],
    ["a duration as a list", "docker: {timeout: [5s]}", `docker.timeout: expected a duration like "30s", "10m" or "4h", got a list`],
    ["high above 1", "policy: {pressure: {high: 1.5}}", `policy.pressure.high: expected a number above 0 and at most 1, like 0.8, got 1.5`],
    ["low 0", "policy: {pressure: {low: 0}}", `policy.pressure.low: expected a number above 0 and at most 1, like 0.8, got 0`],
    [
      "a ratio as a percentage",
      "policy: {pressure: {high: 80%}}",
      `policy.pressure.high: expected a number above 0 and at most 1, like 0.8, got "80%"`,
    ],
    ["NaN", "policy: {pressure: {high: .nan}}", `policy.pressure.high: expected a number above 0 and at most 1, like 0.8, got NaN`],
    [
      "low not below high",
      "policy: {pressure: {high: 0.8, low: 0.8}}",
      `policy.pressure.low: expected a number below policy.pressure.high (0.8), got 0.8`,
    ],
    [
      "high under the default low",
      "policy: {pressure: {high: 0.5}}",
      `policy.pressure.high: expected a number above policy.pressure.low (0.7), got 0.5`,
    ],
    ["maxAge under minAge", "policy: {maxAge: 30s}", `policy.maxAge: expected at least policy.minAge (1m), got "30s"`],
    ["maxPerCycle 0", "reaper: {maxPerCycle: 0}", `reaper.maxPerCycle: expected a whole number of at least 1, got 0`],
    ["maxPerCycle fraction", "reaper: {maxPerCycle: 2.5}", `reaper.maxPerCycle: expected a whole number of at least 1, got 2.5`],
    ["maxPerCycle string", "reaper: {maxPerCycle: '20'}", `reaper.maxPerCycle: expected a whole number of at least 1, got "20"`],
    ["boolean as yes", "policy: {idleIncludesOutput: yes}", `policy.idleIncludesOutput: expected true or false, got "yes"`],
    ["docker enabled as yes", "docker: {enabled: yes}", `docker.enabled: expected "auto", true or false, got "yes"`],
    ["runtime enabled as yes", "runtimes: {podman: {enabled: yes}}", `runtimes.podman.enabled: expected "auto", true or false, got "yes"`],
    [
      "namespaces as a string",
      "runtimes: {containerd: {namespaces: k8s.io}}",
      `runtimes.containerd.namespaces: expected a list of containerd namespaces like ["k8s.io"], got "k8s.io"`,
    ],
    ["no namespaces", "runtimes: {containerd: {namespaces: []}}", `runtimes.containerd.namespaces: expected at least one namespace, like ["k8s.io"]`],
    [
      "a bad namespace",
      "runtimes: {containerd: {namespaces: [k8s.io, 'a b']}}",
      `runtimes.containerd.namespaces[1]: expected a containerd namespace like "k8s.io", got "a b"`,
    ],
    [
      "Docker's namespace while Docker is on",
      "runtimes: {containerd: {namespaces: [k8s.io, moby]}}",
      `runtimes.containerd.namespaces[1]: "moby" is Docker's namespace, whose sessions come through docker: (remove it, or set docker.enabled: false)`,
    ],
    ["an unknown runtime", "runtimes: {cri-o: {enabled: true}}", `runtimes["cri-o"]: unknown key`],
    ["mode", "reaper: {mode: dryrun}", `reaper.mode: expected one of "enforce", "dry-run", got "dryrun"`],
    ["log level", "log: {level: verbose}", `log.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", got "verbose"`],
    ["listen without port", "listen: 127.0.0.1", `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724", got "127.0.0.1"`],
    ["listen as a number", "listen: 9724", `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724", got 9724`],
    [
      "listen port too big",
      "listen: 127.0.0.1:65536",
      `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724" with a port from 0 to 65535, got "127.0.0.1:65536"`,
    ],
    [
      "listen bad IPv4",
      "listen: 300.1.1.1:80",
      `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724" (an IP address or host name before the colon), got "300.1.1.1:80"`,
    ],
    [
      "listen IPv6 unbracketed",
      "listen: '::1:9724'",
      `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724" (IPv6 addresses go in brackets), got "::1:9724"`,
    ],
    [
      "listen bad IPv6",
      "listen: '[::g]:80'",
      `listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724" (an IPv6 address in the brackets), got "[::g]:80"`,
    ],
    ["relative procRoot", "procRoot: proc", `procRoot: expected an absolute path like "/proc", got "proc"`],
    [
      "socket path too long",
      `docker: {socket: /${"s".repeat(120)}}`,
      `docker.socket: expected a socket path of at most 107 bytes (the kernel's limit), got "/${"s".repeat(59)}…"`,
    ],
    [
      "exemptContainers as a string",
      "policy: {exemptContainers: build-*}",
      `policy.exemptContainers: expected a list of container name patterns like ["build-*"], got "build-*"`,
    ],
    [
      "exemptContainers element",
      "policy: {exemptContainers: [ok, 'has space']}",
      `policy.exemptContainers[1]: expected a container name pattern with letters, digits, "_", ".", "-", "*" and "?", got "has space"`,
    ],
    ["exemptLabel empty", "policy: {exemptLabel: ''}", `policy.exemptLabel: expected a label key like "ptyreaper.exempt", got ""`],
    ["a section as a list", "policy: [a]", `policy: expected a mapping of keys, got a list`],
    ["a section as a string", "docker: yes", `docker: expected a mapping of keys, got "yes"`],
    ["the whole file a list", "- a", `(top level): expected a mapping of keys, got a list`],
    ["the whole file a string", "hello", `(top level): expected a mapping of keys, got "hello"`],
    ["an empty leaf", "pollInterval:", `pollInterval: expected a duration like "30s", "10m" or "4h", got nothing`],
  ])("%s", (_name, text, line) => {
    expect(problemsOf(`${text}\n`)).toEqual([line]);
  });

  it.each<[string, string]>([
    ["policy:\n  idelTimeout: 4h\n", "policy.idelTimeout: unknown key (did you mean idleTimeout?)"],
    ["pollintervall: 10s\n", "pollintervall: unknown key (did you mean pollInterval?)"],
    ["policy:\n  idle_timeout: 4h\n", "policy.idle_timeout: unknown key (did you mean idleTimeout?)"],
    ["idleTimeout: 4h\n", "idleTimeout: unknown key (did you mean policy.idleTimeout?)"],
    ["mode: dry-run\n", "mode: unknown key (did you mean reaper.mode?)"],
    ["docker:\n  host: unix:///x\n", "docker.host: unknown key"],
    ["policy:\n  pressure:\n    medium: 0.5\n", "policy.pressure.medium: unknown key"],
    ["frobnicate: 1\n", "frobnicate: unknown key"],
    ['"odd\\nkey": 1\n', '["odd\\nkey"]: unknown key'],
    ["__proto__: {x: 1}\n", "__proto__: unknown key"],
    ["constructor: 1\n", "constructor: unknown key"],
    ["log:\n  level: info\n  format: json\n", "log.format: unknown key"],
  ])("unknown key %j", (text, line) => {
    expect(problemsOf(text)).toEqual([line]);
  });

  it("reports every problem at once, each on its own line", () => {
    const problems = problemsOf("pollInterval: 5\npolicy:\n  idleTimeout: never\n  bogus: 1\nreaper:\n  maxPerCycle: -1\n");
    expect(problems).toHaveLength(4);
    expect(problems.map((p) => p.split(":")[0])).toEqual(
      expect.arrayContaining(["pollInterval", "policy.idleTimeout", "policy.bogus", "reaper.maxPerCycle"]),
    );
    for (const p of problems) expect(p).not.toMatch(/\n/);
  });

  it("caps a flood of problems and says how many were left out", () => {
    const text = Array.from({ length: 80 }, (_, i) => `k${i}: 1`).join("\n");
    const problems = problemsOf(text);
    expect(problems).toHaveLength(51);
    expect(problems[50]).toBe("(30 more problems not shown)");
  });

  it("hostile values are escaped and shortened", () => {
    const [line] = problemsOf(`log: {level: "a\\u2028b\\u202e\\nc${"x".repeat(200)}"}\n`);
    expect(line).toMatch(/^log\.level: expected one of /);
    expect(line).toContain(String.raw`got "a\u2028b\u202e\ncxxx`);
    expect(line).toContain("…");
    expect(line?.length).toBeLessThan(200);
  });

  it("the ConfigError message starts with the source", () => {
    expect(() => parseConfig("pollInterval: 5\n", "/etc/ptyreaper.yaml", {})).toThrow(/^\/etc\/ptyreaper\.yaml: pollInterval: expected a duration/);
  });
});

describe("invalid YAML: one line with line and column", () => {
  it.each<[string, RegExp]>([
    ["a: [1,\n", /^line 2, column 1: invalid YAML: Flow sequence in block collection must be sufficiently indented/],
    ["pollInterval: 1s\npollInterval: 2s\n", /^line 2, column 1: invalid YAML: Map keys must be unique$/],
    ["a: b: c\n", /^line 1, column 4: invalid YAML: Nested mappings are not allowed in compact mappings$/],
    ["a: 1\n---\nb: 2\n", /^line 2, column 1: invalid YAML: Source contains multiple documents/],
    ["\t- a\n", /^line 1, column 1: invalid YAML: Tabs are not allowed as indentation$/],
    ["log: {level: !secret info}\n", /^line 1, column 14: invalid YAML: Unresolved tag: !secret$/],
    ['listen: "127.0.0.1:9724\n', /^line 2, column 1: invalid YAML: Missing closing "quote$/],
    ["a: *nowhere\n", /^invalid YAML: Unresolved alias/],
  ])("%j", (text, line) => {
    const problems = problemsOf(text);
    expect(problems.length).toBeGreaterThanOrEqual(1);
    expect(problems[0]).toMatch(line);
    for (const p of problems) expect(p).not.toMatch(/\n/);
  });

  it("an alias bomb is refused, not expanded", () => {
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 12; i++)
      lines.push(
        `${"b".repeat(i)}: &${"b".repeat(i)} [${Array(10)
          .fill(i === 1 ? "*a" : `*${"b".repeat(i - 1)}`)
          .join(", ")}]`,
      );
    const problems = problemsOf(`${lines.join("\n")}\n`);
    expect(problems).toEqual([expect.stringMatching(/^invalid YAML: Excessive alias count/)]);
  });
});

describe("environment overrides (env > file > default)", () => {
  it.each<[string, string, string, (c: Config) => unknown, unknown]>([
    ["PTYREAPER_LISTEN", "[::]:9000", "listen: 127.0.0.1:1", (c) => c.listen, { host: "::", port: 9000 }],
    ["PTYREAPER_POLL_INTERVAL", "2s", "pollInterval: 30s", (c) => c.pollInterval, 2_000],
    ["PTYREAPER_LOG_LEVEL", "debug", "log: {level: warn}", (c) => c.log.level, "debug"],
    ["PTYREAPER_MODE", "dry-run", "reaper: {mode: enforce}", (c) => c.reaper.mode, "dry-run"],
    ["PTYREAPER_PROC_ROOT", "/host/proc", "procRoot: /proc", (c) => c.procRoot, "/host/proc"],
    ["DOCKER_HOST", "unix:///run/docker.sock", "docker: {socket: /x.sock}", (c) => c.docker.socket, "/run/docker.sock"],
  ])("%s=%s beats the file", (variable, value, file, get, want) => {
    expect(get(parseConfig(`${file}\n`, "f", { [variable]: value }))).toEqual(want);
    // An empty variable counts as unset: the file wins.
    expect(get(parseConfig(`${file}\n`, "f", { [variable]: "" }))).toEqual(get(parseConfig(`${file}\n`, "f", {})));
  });

  it("every documented override exists in schema.ts's comment block", () => {
    const schemaText = readFileSync(new URL("../../../src/config/schema.ts", import.meta.url), "utf8");
    for (const o of ENV_OVERRIDES) expect(schemaText).toMatch(new RegExp(`^//\\s+${o.variable}\\s+${o.key.replace(".", "\\.")}\\s`, "m"));
  });

  it.each<[string, string, string]>([
    ["PTYREAPER_LISTEN", "nowhere", `PTYREAPER_LISTEN: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724", got "nowhere"`],
    ["PTYREAPER_POLL_INTERVAL", "10", `PTYREAPER_POLL_INTERVAL: expected a duration like "30s", "10m" or "4h", got "10"`],
    ["PTYREAPER_POLL_INTERVAL", "100ms", `PTYREAPER_POLL_INTERVAL: expected at least 1s, got "100ms"`],
    ["PTYREAPER_LOG_LEVEL", "loud", `PTYREAPER_LOG_LEVEL: expected one of "trace", "debug", "info", "warn", "error", "fatal", got "loud"`],
    ["PTYREAPER_MODE", "dry_run", `PTYREAPER_MODE: expected one of "enforce", "dry-run", got "dry_run"`],
    ["PTYREAPER_PROC_ROOT", "proc", `PTYREAPER_PROC_ROOT: expected an absolute path like "/proc", got "proc"`],
    [
      "DOCKER_HOST",
      "tcp://10.0.0.1:2375",
      `DOCKER_HOST: expected unix:///path/to/docker.sock, got "tcp://10.0.0.1:2375": remote engines are not supported, ptyreaper reads /proc and signals processes on the Docker host itself`,
    ],
    ["DOCKER_HOST", "/var/run/docker.sock", `DOCKER_HOST: expected unix:///path/to/docker.sock, got "/var/run/docker.sock"`],
    ["DOCKER_HOST", "unix://relative.sock", `DOCKER_HOST: expected unix:///path/to/docker.sock, got "unix://relative.sock"`],
  ])("bad %s=%j is a problem named after the variable", (variable, value, line) => {
    expect(problemsOf("", { [variable]: value })).toEqual([line]);
  });

  it("DOCKER_HOST is ignored when Docker is disabled", () => {
    const c = parseConfig("docker: {enabled: false}\n", "f", { DOCKER_HOST: "tcp://10.0.0.1:2375" });
    expect(c.docker.socket).toBe("/var/run/docker.sock");
  });

  it("env problems are the environment's, not the file's: reported under source \"environment\"", () => {
    const text = "policy: {pressure: {low: 0.9}}\n";
    let caught: unknown;
    try {
      parseConfig(text, "test.yaml", { PTYREAPER_MODE: "x" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).source).toBe("environment");
    expect((caught as ConfigError).problems).toEqual([`PTYREAPER_MODE: expected one of "enforce", "dry-run", got "x"`]);
    // The file's own problem is the file's once the environment is fixed.
    expect(problemsOf(text)).toEqual(["policy.pressure.low: expected a number below policy.pressure.high (0.8), got 0.9"]);
  });

  it.each<[string, string, string[]]>([
    [
      "beside a wrong value and an unknown key",
      "pollInterval: fast\npolicy:\n  pressure: {high: 0.5, low: 0.6}\n  idleTimout: 1h\n",
      [
        'pollInterval: expected a duration like "30s", "10m" or "4h", got "fast"',
        "policy.idleTimout: unknown key (did you mean idleTimeout?)",
        "policy.pressure.low: expected a number below policy.pressure.high (0.5), got 0.6",
      ],
    ],
    // A check that reads a wrong key is left out: the default in its place is not the person's mistake.
    [
      "not when it reads a wrong key",
      "policy:\n  pressure: {high: 0.5, low: lots}\n",
      ['policy.pressure.low: expected a number above 0 and at most 1, like 0.8, got "lots"'],
    ],
    ["not when a section is wrong", "policy: 3\n", ["policy: expected a mapping of keys, got 3"]],
  ])("reports the checks across keys %s", (_what, text, problems) => {
    expect(problemsOf(text)).toEqual(problems);
  });

  it("configPathFor: --config, else the installed config when it exists, else none", () => {
    expect(configPathFor("/tmp/mine.yaml", "/etc/ptyreaper/config.yaml")).toBe("/tmp/mine.yaml");
    expect(configPathFor(undefined, "/etc/ptyreaper/config.yaml")).toBe("/etc/ptyreaper/config.yaml");
    expect(configPathFor(undefined, null)).toBeNull();
    expect(configPathFor(undefined, undefined)).toBeNull();
  });

  it("appliedOverrides names each variable in force and the key it sets", () => {
    const config = parseConfig("docker: {enabled: false}\n", "f", {});
    expect(appliedOverrides(config, { PTYREAPER_MODE: "dry-run", DOCKER_HOST: "unix:///x.sock", PTYREAPER_LISTEN: "" })).toEqual([
      "PTYREAPER_MODE=dry-run (reaper.mode)",
    ]);
  });

  it("the process environment is never read", () => {
    process.env.PTYREAPER_MODE = "not-a-mode";
    try {
      expect(parseConfig("", "f", {}).reaper.mode).toBe("enforce");
    } finally {
      delete process.env.PTYREAPER_MODE;
    }
  });
});

describe("withOverrides (command-line flags beat everything)", () => {
  const base = parseConfig("reaper: {mode: enforce}\n", "f", { PTYREAPER_LISTEN: "127.0.0.1:1" });

  it("--listen and --dry-run", () => {
    const c = withOverrides(base, { listen: "[::1]:9999", dryRun: true });
    expect(c.listen).toEqual({ host: "::1", port: 9999 });
    expect(c.reaper.mode).toBe("dry-run");
    expect(isDeepFrozen(c)).toBe(true);
    expect(base.listen).toEqual({ host: "127.0.0.1", port: 1 });
    expect(base.reaper.mode).toBe("enforce");
  });

  it("no flags: an equal, frozen config", () => {
    const c = withOverrides(base, { dryRun: false });
    expect(c).toEqual(base);
    expect(isDeepFrozen(c)).toBe(true);
  });

  it("a bad --listen is a ConfigError naming --listen", () => {
    let caught: unknown;
    try {
      withOverrides(base, { listen: "localhost" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).problems).toEqual([`--listen: expected HOST:PORT like "127.0.0.1:9724" or "[::1]:9724", got "localhost"`]);
  });
});

describe("loadConfig reads files", () => {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads and parses a file, env applied", () => {
    const file = join(dir, "ok.yaml");
    writeFileSync(file, "pollInterval: 3s\n");
    expect(loadConfig(file, { PTYREAPER_LOG_LEVEL: "warn" })).toMatchObject({ pollInterval: 3_000, log: { level: "warn" } });
  });

  it("a ConfigError names the file in its message", () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "pollInterval: 3\n");
    expect(() => loadConfig(file, {})).toThrow(new RegExp(`^${file}: pollInterval: `));
  });

  it.each<[string, () => string, RegExp]>([
    ["a missing file", () => join(dir, "missing.yaml"), /^cannot read config .*missing\.yaml: no such file$/],
    ["a directory", () => dir, /^cannot read config .*: is a directory$/],
    [
      "a file over 1 MiB",
      () => {
        const f = join(dir, "big.yaml");
        writeFileSync(f, `# ${"x".repeat(1024 * 1024)}\n`);
        return f;
      },
      /^cannot read config .*big\.yaml: larger than 1048576 bytes$/,
    ],
    [
      "a file that is not UTF-8",
      () => {
        const f = join(dir, "latin1.yaml");
        writeFileSync(f, Buffer.from([0x6c, 0x6f, 0x67, 0x3a, 0x20, 0xe9, 0x0a]));
        return f;
      },
      /^cannot read config .*latin1\.yaml: not UTF-8 text$/,
    ],
  ])("%s → PTYR_CONFIG_READ", (_name, makePath, message) => {
    let caught: unknown;
    try {
      loadConfig(makePath(), {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PtyreaperError);
    expect(caught).not.toBeInstanceOf(ConfigError);
    expect((caught as PtyreaperError).code).toBe("PTYR_CONFIG_READ");
    expect((caught as Error).message).toMatch(message);
  });

  it("/dev/zero does not eat memory", () => {
    expect(() => loadConfig("/dev/zero", {})).toThrow(/larger than 1048576 bytes/);
  });
});

describe("commandLine", () => {
  it.each(["full", "argv0", "off"] as const)("accepts %s", (value) => {
    expect(parseConfig(`commandLine: ${value}\n`, "c.yaml", {}).commandLine).toBe(value);
  });

  it("defaults to argv0: /sessions never shows arguments unless asked", () => {
    expect(parseConfig("", "c.yaml", {}).commandLine).toBe("argv0");
  });

  it("anything else is one readable problem line", () => {
    expect(() => parseConfig("commandLine: partial\n", "c.yaml", {})).toThrow(
      /^c\.yaml: commandLine: expected one of "full", "argv0", "off", got "partial"$/,
    );
  });
});

describe("http.sessions", () => {
  it.each([
    ["", true],
    ["http:\n", true],
    ["http:\n  sessions: false\n", false],
    ["http: {sessions: true}\n", true],
  ])("%j gives %s", (text, want) => {
    expect(parseConfig(text, "c.yaml", {}).http.sessions).toBe(want);
  });

  it("anything but a boolean, or an unknown key beside it, is one readable problem line", () => {
    expect(problemsOf("http:\n  sessions: off\n")).toEqual([expect.stringMatching(/^http\.sessions: expected true or false/)]);
    expect(problemsOf("http:\n  session: false\n")).toEqual(["http.session: unknown key (did you mean sessions?)"]);
  });
});

describe("http.healthListen", () => {
  it.each([
    ["", null],
    ["http:\n  healthListen: null\n", null],
    ['http:\n  healthListen: "127.0.0.1:9725"\n', { host: "127.0.0.1", port: 9725 }],
    ['http:\n  healthListen: "127.0.0.53:0"\n', { host: "127.0.0.53", port: 0 }],
    ['http:\n  healthListen: "[::1]:9725"\n', { host: "::1", port: 9725 }],
  ])("%j gives %j", (text, want) => {
    expect(parseConfig(text, "c.yaml", {}).http.healthListen).toEqual(want);
  });

  // It answers without credentials: an address other hosts can reach (or a name that may resolve to one) is refused.
  it.each(['"0.0.0.0:9725"', '"10.0.0.5:9725"', '"[::]:9725"', '"localhost:9725"', '"127.0.0.1"', "9725", "true"])(
    "%s is one readable problem line",
    (value) => {
      expect(problemsOf(`http:\n  healthListen: ${value}\n`)).toEqual([
        expect.stringMatching(/^http\.healthListen: expected a loopback HOST:PORT like "127\.0\.0\.1:9725"/),
      ]);
    },
  );
});
