// The config schema: every key, its default, its unit and its limits, and the environment overrides.
//
// Environment overrides (precedence: command-line flag > environment > config file > default).
// An empty variable counts as unset. A bad value is a config error named after the variable.
//
//   PTYREAPER_LISTEN         listen          HOST:PORT, e.g. 127.0.0.1:9724 or [::1]:9724
//   PTYREAPER_POLL_INTERVAL  pollInterval    a duration, e.g. 10s (at least 1s)
//   PTYREAPER_LOG_LEVEL      log.level       trace | debug | info | warn | error | fatal
//   PTYREAPER_MODE           reaper.mode     enforce | dry-run
//   PTYREAPER_PROC_ROOT      procRoot        an absolute path, e.g. /host/proc
//   DOCKER_HOST              docker.socket   unix:///path/to/docker.sock (tcp:// is refused: ptyreaper
//                                            reads /proc and signals processes, so it runs on the Docker
//                                            host itself); ignored when docker.enabled is false
//
// Durations are strings with a unit: "500ms", "30s", "10m", "4h", "1d", or combined largest first
// ("1h30m"). "off" is accepted by policy.idleTimeout, policy.maxAge and policy.orphanGrace only.
import { isIPv4, isIPv6 } from "node:net";
import { posix } from "node:path";
import type { Level } from "pino";
import { z } from "zod";
import type { Config } from "./types.js";
import { formatDurationExact, parseDuration } from "./duration.js";
import { escapeUnprintable } from "../text.js";

/** Kernel tty times move in 8-second steps (PTY-FACTS "Idle time"): a shorter idle threshold means nothing. */
export const MIN_IDLE_THRESHOLD_MS = 10_000;
/** Node timers overflow past 2^31-1 ms and then fire at once: a longer interval would spin the loop. */
export const MAX_TIMER_MS = 2_147_483_647;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH_BYTES = 107;

export const LOG_LEVELS: readonly Level[] = ["trace", "debug", "info", "warn", "error", "fatal"];
export const REAPER_MODES = ["enforce", "dry-run"] as const;
export const COMMAND_LINE_DISPLAYS = ["full", "argv0", "off"] as const;

/**
 * Every key with its default, as it would be written in YAML. config/ptyreaper.yaml repeats this
 * with comments; a test checks that the two agree.
 */
export const DEFAULT_SETTINGS = {
  pollInterval: "10s",
  fullScanInterval: "10m",
  listen: "127.0.0.1:9724",
  procRoot: "/proc",
  stateDir: "/var/lib/ptyreaper",
  docker: { enabled: true, socket: "/var/run/docker.sock", timeout: "5s" },
  runtimes: {
    containerd: { enabled: "auto", socket: "/run/containerd/containerd.sock", namespaces: ["k8s.io"] as string[], timeout: "5s" },
    podman: { enabled: "auto", socket: "/run/podman/podman.sock", timeout: "5s" },
  },
  policy: {
    idleTimeout: "4h",
    idleIncludesOutput: true,
    maxAge: "off",
    minAge: "1m",
    pressure: { high: 0.8, low: 0.7, minIdle: "10m", containerShare: 0.25 },
    exemptLabel: "ptyreaper.exempt",
    exemptContainers: [] as string[],
    exemptNamespaces: [] as string[],
    orphanGrace: "2m",
  },
  reaper: { mode: "enforce", grace: "10s", maxPerCycle: 20 },
  log: { level: "info" },
  commandLine: "argv0",
  webConfigFile: null,
  masterOnlyGrace: "5m",
  http: { sessions: true, healthListen: null },
} as const;

// ---- Values shown back in messages: one line, bounded, control and invisible characters escaped.

const MAX_SHOWN_CHARS = 60;

/** A string quoted for a one-line message. JSON escapes newlines and controls; we add the invisibles. */
export function quote(text: string): string {
  const chars = Array.from(text);
  const shown = chars.length > MAX_SHOWN_CHARS ? `${chars.slice(0, MAX_SHOWN_CHARS).join("")}…` : text;
  return escapeUnprintable(JSON.stringify(shown));
}

/**
 * Any message text made safe for one line: whitespace runs become one space, other control and
 * invisible characters are escaped, and the whole is bounded (library messages may quote input).
 */
export function oneLine(text: string, maxChars = 300): string {
  const flat = escapeControls(text.replace(/\s+/g, " ").trim());
  const chars = Array.from(flat);
  return chars.length > maxChars ? `${chars.slice(0, maxChars).join("")}…` : flat;
}

/** Control and invisible characters escaped (src/text.ts); everything else, spaces included, unchanged. */
export function escapeControls(text: string): string {
  return escapeUnprintable(text);
}

/** What a person typed, in a few characters: `"soon"`, `10`, `true`, `a list`, `a mapping`, `nothing`. */
export function describeValue(input: unknown): string {
  if (input === null || input === undefined) return "nothing";
  if (typeof input === "string") return quote(input);
  if (typeof input === "number" || typeof input === "boolean" || typeof input === "bigint") return String(input);
  if (Array.isArray(input)) return "a list";
  if (typeof input === "object") return "a mapping";
  return typeof input;
}

// ---- Leaf checks: pure functions of one value, shared by the file schema and the env overrides.

export type CheckResult<T> = { ok: true; value: T } | { ok: false; message: string };
export type Check<T> = (input: unknown) => CheckResult<T>;

const ok = <T>(value: T): CheckResult<T> => ({ ok: true, value });
const bad = <T>(message: string): CheckResult<T> => ({ ok: false, message });
const expected = <T>(what: string, input: unknown): CheckResult<T> => bad(`expected ${what}, got ${describeValue(input)}`);

interface DurationRule {
  off: boolean;
  min: number;
  /** Why the minimum, shown when it is broken. */
  minWhy?: string;
  max: number;
  maxWhy?: string;
}

export function durationCheck(rule: DurationRule & { off: true }): Check<number | null>;
export function durationCheck(rule: DurationRule & { off: false }): Check<number>;
export function durationCheck(rule: DurationRule): Check<number | null> {
  const like = rule.off ? `a duration like "30s", "10m", "4h" or "off"` : `a duration like "30s", "10m" or "4h"`;
  return (input) => {
    if (typeof input === "number") {
      return bad(`expected ${like}, got ${describeValue(input)}: add a unit, e.g. "${Number.isFinite(input) ? input : 10}s"`);
    }
    if (typeof input !== "string") return expected(like, input);
    const ms = parseDuration(input);
    if (ms === undefined) return expected(like, input);
    if (ms === null) return rule.off ? ok(null) : expected(`${like} ("off" is not allowed here)`, input);
    if (ms < rule.min) {
      return expected(`at least ${formatDurationExact(rule.min)}${rule.minWhy ? ` (${rule.minWhy})` : ""}`, input);
    }
    if (ms > rule.max) {
      return expected(`at most ${formatDurationExact(rule.max)}${rule.maxWhy ? ` (${rule.maxWhy})` : ""}`, input);
    }
    return ok(ms);
  };
}

const TIMER_LIMIT = { max: MAX_TIMER_MS, maxWhy: "a timer cannot wait longer" };
const POLICY_LIMIT = { max: Number.MAX_SAFE_INTEGER };
const GRANULARITY = "tty times move in 8-second steps";

export const checkPollInterval = durationCheck({ off: false, min: 1_000, ...TIMER_LIMIT });
const checkFullScanInterval = durationCheck({ off: false, min: 1_000, ...TIMER_LIMIT });
const checkDockerTimeout = durationCheck({ off: false, min: 100, ...TIMER_LIMIT });
const checkGrace = durationCheck({ off: false, min: 100, ...TIMER_LIMIT });
const checkIdleTimeout = durationCheck({ off: true, min: MIN_IDLE_THRESHOLD_MS, minWhy: GRANULARITY, ...POLICY_LIMIT });
const checkMinIdle = durationCheck({ off: false, min: MIN_IDLE_THRESHOLD_MS, minWhy: GRANULARITY, ...POLICY_LIMIT });
const checkMaxAge = durationCheck({ off: true, min: 1_000, ...POLICY_LIMIT });
const checkMinAge = durationCheck({ off: false, min: 0, ...POLICY_LIMIT });
// It also asks for this long without input, which tty times tell in 8-second steps.
const checkOrphanGrace = durationCheck({ off: true, min: MIN_IDLE_THRESHOLD_MS, minWhy: GRANULARITY, ...POLICY_LIMIT });
// An exec's master outlives its shell for a moment (the shim closes it after the exit): a grace under a second names those.
const checkMasterOnlyGrace = durationCheck({
  off: false,
  min: 1_000,
  minWhy: "a runtime closes an ended exec's master within moments",
  ...POLICY_LIMIT,
});

const checkBoolean: Check<boolean> = (input) => (typeof input === "boolean" ? ok(input) : expected("true or false", input));

/** A share of container pty capacity: above 0, at most 1. */
const checkRatio: Check<number> = (input) =>
  typeof input === "number" && Number.isFinite(input) && input > 0 && input <= 1
    ? ok(input)
    : expected("a number above 0 and at most 1, like 0.8", input);

const checkMaxPerCycle: Check<number> = (input) =>
  typeof input === "number" && Number.isSafeInteger(input) && input >= 1 ? ok(input) : expected("a whole number of at least 1", input);

function oneOf<T extends string>(values: readonly T[]): Check<T> {
  const list = values.map((v) => `"${v}"`).join(", ");
  return (input) => (typeof input === "string" && (values as readonly string[]).includes(input) ? ok(input as T) : expected(`one of ${list}`, input));
}

export const checkLogLevel = oneOf(LOG_LEVELS);
export const checkMode = oneOf(REAPER_MODES);
const checkCommandLine = oneOf(COMMAND_LINE_DISPLAYS);

// A NUL can never be in a path; other control characters are legal but always a mistake in a config.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export const checkAbsolutePath: Check<string> = (input) => {
  if (typeof input !== "string" || !input.startsWith("/") || CONTROL.test(input) || input.length > 4096) {
    return expected('an absolute path like "/proc"', input);
  }
  const normal = posix.normalize(input);
  return ok(normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal);
};

export const checkSocketPath: Check<string> = (input) => {
  const path = checkAbsolutePath(input);
  if (!path.ok) return expected('an absolute socket path like "/var/run/docker.sock"', input);
  if (Buffer.byteLength(path.value) > MAX_UNIX_SOCKET_PATH_BYTES) {
    return expected(`a socket path of at most ${MAX_UNIX_SOCKET_PATH_BYTES} bytes (the kernel's limit)`, input);
  }
  return path;
};

/** DOCKER_HOST as the docker CLI reads it, limited to local unix sockets. */
export const checkDockerHost: Check<string> = (input) => {
  if (typeof input === "string" && input.startsWith("unix://")) {
    const socket = checkSocketPath(input.slice("unix://".length));
    return socket.ok ? socket : expected("unix:///path/to/docker.sock", input);
  }
  if (typeof input === "string" && /^(tcp|https?|ssh|npipe):\/\//.test(input)) {
    return bad(
      `expected unix:///path/to/docker.sock, got ${describeValue(input)}: remote engines are not supported, ` +
        "ptyreaper reads /proc and signals processes on the Docker host itself",
    );
  }
  return expected("unix:///path/to/docker.sock", input);
};

/** `enabled` of a runtime: "auto", true or false. */
const checkRuntimeEnabled: Check<"auto" | boolean> = (input) =>
  input === "auto" || typeof input === "boolean" ? ok(input) : expected(`"auto", true or false`, input);

/** Docker keeps its containers in containerd namespace "moby"; its sessions come through `docker:`. */
export const DOCKER_CONTAINERD_NAMESPACE = "moby";

/** containerd's identifier rule for namespaces: alphanumerics separated by single ".", "_" or "-", at most 76 characters. */
const checkContainerdNamespace: Check<string> = (input) =>
  typeof input === "string" && input.length <= 76 && /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/.test(input)
    ? ok(input)
    : expected(`a containerd namespace like "k8s.io"`, input);

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const LISTEN_LIKE = `HOST:PORT like "127.0.0.1:9724" or "[::1]:9724"`;

/** "HOST:PORT" with IPv6 in brackets. Port 0 asks the kernel for a free port (tests use it). */
export const checkListen: Check<{ host: string; port: number }> = (input) => {
  if (typeof input !== "string") return expected(LISTEN_LIKE, input);
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(input);
  if (m === null) {
    if (typeof input === "string" && isIPv6(input.replace(/:\d+$/, ""))) {
      return expected(`${LISTEN_LIKE} (IPv6 addresses go in brackets)`, input);
    }
    return expected(LISTEN_LIKE, input);
  }
  const port = Number(m[3]);
  if (port > 65_535) return expected(`${LISTEN_LIKE} with a port from 0 to 65535`, input);
  const bracketed = m[1];
  if (bracketed !== undefined) {
    return isIPv6(bracketed) ? ok({ host: bracketed, port }) : expected(`${LISTEN_LIKE} (an IPv6 address in the brackets)`, input);
  }
  const host = m[2] ?? "";
  // All-digit dotted names would be accepted as hostnames; they are always a mistyped IPv4 address.
  const valid = /^[\d.]+$/.test(host) ? isIPv4(host) : HOSTNAME.test(host);
  return valid ? ok({ host, port }) : expected(`${LISTEN_LIKE} (an IP address or host name before the colon)`, input);
};

const checkLabelKey: Check<string> = (input) =>
  typeof input === "string" && input.length > 0 && input.length <= 255 && !/[\s=]/.test(input) && !CONTROL.test(input)
    ? ok(input)
    : expected('a label key like "ptyreaper.exempt"', input);

/** Docker names are [a-zA-Z0-9][a-zA-Z0-9_.-]*; a pattern adds * and ?. The API's leading "/" is dropped. */
// A Kubernetes namespace is a DNS label (at most 63 lower-case letters, digits and "-"); "*" and "?" make a pattern.
const checkNamespaceGlob: Check<string> = (input) =>
  typeof input === "string" && /^[a-z0-9\-*?]{1,63}$/.test(input)
    ? ok(input)
    : expected('a Kubernetes namespace pattern with a-z, 0-9, "-", "*" and "?"', input);

const checkNameGlob: Check<string> = (input) =>
  typeof input === "string" && /^\/?[A-Za-z0-9_.\-*?]{1,255}$/.test(input)
    ? ok(input.replace(/^\//, ""))
    : expected('a container name pattern with letters, digits, "_", ".", "-", "*" and "?"', input);

/** The exporter-toolkit web config (TLS, basic auth): an absolute path, or null for plain HTTP without auth. */
const checkWebConfigFile: Check<string | null> = (input) => {
  if (input === null) return ok(null);
  const path = checkAbsolutePath(input);
  return path.ok ? path : expected('an absolute path like "/etc/ptyreaper/web-config.yml", or null', input);
};

/**
 * `http.healthListen`: a second, plain-HTTP listener serving only /healthz and /readyz, without the web
 * config's TLS and passwords, so a probe needs no credential. Loopback only: what needs no password must
 * not be reachable from other hosts (with `hostNetwork`, the kubelet reaches it at 127.0.0.1).
 */
const checkHealthListen: Check<{ host: string; port: number } | null> = (input) => {
  if (input === null) return ok(null);
  const like = `a loopback HOST:PORT like "127.0.0.1:9725" or "[::1]:9725", or null`;
  const address = checkListen(input);
  if (!address.ok) return expected(like, input);
  const { host } = address.value;
  // Addresses only: a name could resolve elsewhere.
  const loopback = host === "::1" || (isIPv4(host) && host.startsWith("127."));
  return loopback ? address : expected(`${like} (it answers without credentials, so never on another address)`, input);
};

// ---- The file schema.

/** A zod schema running one leaf check; its message becomes the problem line. */
function leaf<T>(check: Check<T>) {
  return z.unknown().transform((input, ctx): T => {
    const result = check(input);
    if (result.ok) return result.value;
    ctx.addIssue({ code: "custom", message: result.message, input });
    return z.NEVER;
  });
}

const MAPPING = "a mapping of keys";

/** A strict mapping; a key left empty in YAML (`docker:` with every child commented out) means all defaults. */
function section<S extends z.core.$ZodLooseShape>(shape: S) {
  return z.preprocess(
    (v) => v ?? {},
    z.strictObject(shape, { error: (iss) => (iss.code === "invalid_type" ? `expected ${MAPPING}, got ${describeValue(iss.input)}` : undefined) }),
  );
}

const D = DEFAULT_SETTINGS;

export const configSchema = section({
  pollInterval: leaf(checkPollInterval).prefault(D.pollInterval),
  fullScanInterval: leaf(checkFullScanInterval).prefault(D.fullScanInterval),
  listen: leaf(checkListen).prefault(D.listen),
  procRoot: leaf(checkAbsolutePath).prefault(D.procRoot),
  stateDir: leaf(checkAbsolutePath).prefault(D.stateDir),
  docker: section({
    enabled: leaf(checkRuntimeEnabled).prefault(D.docker.enabled),
    socket: leaf(checkSocketPath).prefault(D.docker.socket),
    timeout: leaf(checkDockerTimeout).prefault(D.docker.timeout),
  }),
  runtimes: section({
    containerd: section({
      enabled: leaf(checkRuntimeEnabled).prefault(D.runtimes.containerd.enabled),
      socket: leaf(checkSocketPath).prefault(D.runtimes.containerd.socket),
      namespaces: z
        .array(leaf(checkContainerdNamespace), {
          error: (iss) => `expected a list of containerd namespaces like ["k8s.io"], got ${describeValue(iss.input)}`,
        })
        .min(1, { error: `expected at least one namespace, like ["k8s.io"]` })
        .nullish()
        .transform((v) => v ?? [...D.runtimes.containerd.namespaces]),
      timeout: leaf(checkDockerTimeout).prefault(D.runtimes.containerd.timeout),
    }),
    podman: section({
      enabled: leaf(checkRuntimeEnabled).prefault(D.runtimes.podman.enabled),
      socket: leaf(checkSocketPath).prefault(D.runtimes.podman.socket),
      timeout: leaf(checkDockerTimeout).prefault(D.runtimes.podman.timeout),
    }),
  }),
  policy: section({
    idleTimeout: leaf(checkIdleTimeout).prefault(D.policy.idleTimeout),
    idleIncludesOutput: leaf(checkBoolean).prefault(D.policy.idleIncludesOutput),
    maxAge: leaf(checkMaxAge).prefault(D.policy.maxAge),
    minAge: leaf(checkMinAge).prefault(D.policy.minAge),
    pressure: section({
      high: leaf(checkRatio).prefault(D.policy.pressure.high),
      low: leaf(checkRatio).prefault(D.policy.pressure.low),
      minIdle: leaf(checkMinIdle).prefault(D.policy.pressure.minIdle),
      containerShare: leaf(checkRatio).prefault(D.policy.pressure.containerShare),
    }),
    exemptLabel: leaf(checkLabelKey).prefault(D.policy.exemptLabel),
    exemptContainers: z
      .array(leaf(checkNameGlob), {
        error: (iss) => `expected a list of container name patterns like ["build-*"], got ${describeValue(iss.input)}`,
      })
      .nullish()
      .transform((v) => v ?? []),
    exemptNamespaces: z
      .array(leaf(checkNamespaceGlob), {
        error: (iss) => `expected a list of Kubernetes namespace patterns like ["kube-system"], got ${describeValue(iss.input)}`,
      })
      .nullish()
      .transform((v) => v ?? []),
    orphanGrace: leaf(checkOrphanGrace).prefault(D.policy.orphanGrace),
  }),
  reaper: section({
    mode: leaf(checkMode).prefault(D.reaper.mode),
    grace: leaf(checkGrace).prefault(D.reaper.grace),
    maxPerCycle: leaf(checkMaxPerCycle).prefault(D.reaper.maxPerCycle),
  }),
  log: section({
    level: leaf(checkLogLevel).prefault(D.log.level),
  }),
  commandLine: leaf(checkCommandLine).prefault(D.commandLine),
  webConfigFile: leaf(checkWebConfigFile).prefault(D.webConfigFile),
  masterOnlyGrace: leaf(checkMasterOnlyGrace).prefault(D.masterOnlyGrace),
  http: section({
    sessions: leaf(checkBoolean).prefault(D.http.sessions),
    healthListen: leaf(checkHealthListen).prefault(D.http.healthListen),
  }),
});

// The schema's output must be exactly the normalised Config of types.ts.
type SchemaOutput = z.output<typeof configSchema>;
const _outputIsConfig: (c: SchemaOutput) => Config = (c) => c;
const _configIsOutput: (c: Config) => SchemaOutput = (c) => c;

// ---- Environment overrides, in the order they are applied.

export interface EnvOverride {
  variable: string;
  /** The config key it replaces, for documentation and messages. */
  key: string;
  /** False when the variable does not matter for this config (DOCKER_HOST with Docker disabled). */
  appliesTo: (config: Config) => boolean;
  /** Checks the value and writes it into a mutable config. */
  apply: (config: Config, value: string) => CheckResult<unknown>;
}

function override<T>(
  variable: string,
  key: string,
  check: Check<T>,
  set: (c: Config, v: T) => void,
  appliesTo: (c: Config) => boolean = () => true,
): EnvOverride {
  return {
    variable,
    key,
    appliesTo,
    apply: (config, value) => {
      const result = check(value);
      if (result.ok) set(config, result.value);
      return result;
    },
  };
}

export const ENV_OVERRIDES: readonly EnvOverride[] = [
  override("PTYREAPER_LISTEN", "listen", checkListen, (c, v) => (c.listen = v)),
  override("PTYREAPER_POLL_INTERVAL", "pollInterval", checkPollInterval, (c, v) => (c.pollInterval = v)),
  override("PTYREAPER_LOG_LEVEL", "log.level", checkLogLevel, (c, v) => (c.log.level = v)),
  override("PTYREAPER_MODE", "reaper.mode", checkMode, (c, v) => (c.reaper.mode = v)),
  override("PTYREAPER_PROC_ROOT", "procRoot", checkAbsolutePath, (c, v) => (c.procRoot = v)),
  override(
    "DOCKER_HOST",
    "docker.socket",
    checkDockerHost,
    (c, v) => (c.docker.socket = v),
    (c) => c.docker.enabled !== false,
  ),
];
