// Reads the config file, applies env and command-line overrides, reports every problem as one line, freezes.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError, errorMessage, PtyreaperError } from "../errors.js";
import { formatDurationExact } from "./duration.js";
import { checkListen, configSchema, DEFAULT_SETTINGS, describeValue, DOCKER_CONTAINERD_NAMESPACE, ENV_OVERRIDES, oneLine, quote } from "./schema.js";
import type { Config } from "./types.js";

export type Env = Readonly<Record<string, string | undefined>>;

/** A config is a few hundred bytes; a bigger "file" is a mistake (or /dev/zero) and must not eat memory. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** A pasted wrong file can yield thousands of unknown keys; the first ones say enough. */
const MAX_PROBLEMS = 50;
/** Anchors and aliases are allowed, but not the "billion laughs" expansion. */
const MAX_ALIAS_COUNT = 100;

/**
 * Validates YAML text (file > default), then the env overrides (env > file). `source` names the text
 * in the ConfigError's message; the problems themselves name keys, variables or YAML positions. A bad
 * variable is an "environment" problem, not the file's: the file may be fine.
 */
export function parseConfig(text: string, source: string, env: Env): Config {
  const raw = parseYaml(text.replace(/^\uFEFF/, ""), source);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) fail(source, [...parsed.error.issues.flatMap(issueLines), ...crossProblemsBeside(raw, parsed.error.issues)]);
  const config = parsed.data;
  const envProblems: string[] = [];
  for (const o of ENV_OVERRIDES) {
    const value = env[o.variable];
    if (value === undefined || value === "" || !o.appliesTo(config)) continue;
    const result = o.apply(config, value);
    if (!result.ok) envProblems.push(`${o.variable}: ${result.message}`);
  }
  if (envProblems.length > 0) fail("environment", envProblems);
  const problems = crossFieldProblems(config, raw);
  if (problems.length > 0) fail(source, problems);
  return deepFreeze(config);
}

/** The variables that override a key of this config, e.g. `PTYREAPER_MODE=dry-run (reaper.mode)`. */
export function appliedOverrides(config: Config, env: Env): string[] {
  return ENV_OVERRIDES.filter((o) => {
    const value = env[o.variable];
    return value !== undefined && value !== "" && o.appliesTo(config);
  }).map((o) => `${o.variable}=${oneLine(env[o.variable] ?? "", 80)} (${o.key})`);
}

/**
 * Which file a command reads: `--config FILE` first, else the installed config when it exists
 * (/etc/ptyreaper/config.yaml, written by `ptyreaper install`), else none (defaults and environment).
 */
export function configPathFor(flag: string | undefined, installedConfig: string | null | undefined): string | null {
  return flag ?? installedConfig ?? null;
}

/** `path` null: defaults and env only. */
export function loadConfig(path: string | null, env: Env): Config {
  if (path === null) return parseConfig("", "environment", env);
  return parseConfig(readConfigText(path), path, env);
}

export interface CliOverrides {
  listen?: string;
  dryRun?: boolean;
}

/** Command-line flags, the last word: `--listen HOST:PORT` and `--dry-run` (false = flag absent). */
export function withOverrides(config: Config, o: CliOverrides): Config {
  const next: Config = structuredClone(config);
  if (o.listen !== undefined) {
    const listen = checkListen(o.listen);
    if (!listen.ok) fail("command line", [`--listen: ${listen.message}`]);
    next.listen = listen.value;
  }
  if (o.dryRun === true) next.reaper.mode = "dry-run";
  return deepFreeze(next);
}

/** Every default, with no file and no environment. */
export function defaultConfig(): Config {
  return parseConfig("", "defaults", {});
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function fail(source: string, problems: string[]): never {
  const shown =
    problems.length > MAX_PROBLEMS ? [...problems.slice(0, MAX_PROBLEMS), `(${problems.length - MAX_PROBLEMS} more problems not shown)`] : problems;
  throw new ConfigError(source, shown);
}

// ---- Reading

function readConfigText(path: string): string {
  const readError = (reason: string, cause?: unknown): PtyreaperError =>
    new PtyreaperError("PTYR_CONFIG_READ", `cannot read config ${path}: ${reason}`, { cause });
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw readError(readReason(err), err);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw readError("is a directory");
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        throw readError(readReason(err), err);
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_CONFIG_BYTES) throw readError(`larger than ${MAX_CONFIG_BYTES} bytes`);
      chunks.push(chunk.subarray(0, n));
    }
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
    } catch (err) {
      throw readError("not UTF-8 text", err);
    }
  } finally {
    closeSync(fd);
  }
}

function readReason(err: unknown): string {
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return errorMessage(err);
  }
}

// ---- YAML

function parseYaml(text: string, source: string): unknown {
  // logLevel "error": yaml would otherwise print its warnings on the process's stderr (they become problems here).
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, version: "1.2", merge: false, logLevel: "error" });
  // Warnings too (an unknown !tag, say): a config that only half means what it says is refused.
  const problems = [...doc.errors, ...doc.warnings].map((e) => {
    // yaml appends " at line L, column C:" and a code frame; we keep the first sentence and our own position.
    const message = oneLine(e.message.split(/ at line \d+, column \d+/)[0] ?? e.message);
    const at = e.linePos?.[0];
    return at ? `line ${at.line}, column ${at.col}: invalid YAML: ${message}` : `invalid YAML: ${message}`;
  });
  if (problems.length > 0) fail(source, problems);
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT, mapAsMap: false }) as unknown;
  } catch (err) {
    // An unresolved alias, or aliases expanding past the limit: the yaml library throws rather than reports.
    return fail(source, [`invalid YAML: ${oneLine(errorMessage(err))}`]);
  }
}

// ---- zod issues to lines

/** `policy.pressure.low`, `policy.exemptContainers[2]`, `policy["odd key"]`; the root is "(top level)". */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(top level)";
  return path
    .map((seg, i) => {
      if (typeof seg === "number") return `[${seg}]`;
      const name = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return i === 0 ? name : `.${name}`;
      return `[${quote(name)}]`;
    })
    .join("");
}

function issueLines(issue: z.core.$ZodIssue): string[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const hint = suggestKey(issue.path.map(String), key);
      return `${formatKeyPath([...issue.path, key])}: unknown key${hint ? ` (did you mean ${hint}?)` : ""}`;
    });
  }
  return [`${formatKeyPath(issue.path)}: ${oneLine(issue.message)}`];
}

type Tree = { readonly [key: string]: unknown };
const isTree = (v: unknown): v is Tree => typeof v === "object" && v !== null && !Array.isArray(v);

function knownKeysAt(path: readonly string[]): string[] {
  let node: unknown = DEFAULT_SETTINGS;
  for (const seg of path) node = isTree(node) ? node[seg] : undefined;
  return isTree(node) ? Object.keys(node) : [];
}

function allKeyPaths(node: unknown = DEFAULT_SETTINGS, prefix: string[] = []): string[][] {
  if (!isTree(node)) return [prefix];
  return Object.entries(node).flatMap(([k, v]) => [[...prefix, k], ...(isTree(v) ? allKeyPaths(v, [...prefix, k]) : [])]);
}

/** A sibling with a near spelling, else the same name elsewhere (`idleTimeout` at top level → policy.idleTimeout). */
export function suggestKey(path: readonly string[], key: string): string | null {
  const norm = (s: string): string => s.toLowerCase().replace(/[-_]/g, "");
  const want = norm(key);
  if (want.length === 0 || want.length > 64) return null;
  const limit = want.length < 5 ? 1 : 2;
  let best: { name: string; d: number } | null = null;
  for (const name of knownKeysAt(path)) {
    const d = editDistance(want, norm(name));
    if (d <= limit && (best === null || d < best.d)) best = { name, d };
  }
  if (best) return best.name;
  const elsewhere = allKeyPaths().filter((p) => norm(p[p.length - 1] ?? "") === want);
  if (elsewhere.length === 1 && elsewhere[0]) return elsewhere[0].join(".");
  return null;
}

/** Edit distance counting a swap of two neighbours as one edit ("idel" → "idle"). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}

// ---- Checks across keys

function rawAt(raw: unknown, path: readonly string[]): unknown {
  let node = raw;
  for (const seg of path) node = isTree(node) && Object.hasOwn(node, seg) ? node[seg] : undefined;
  return node;
}

/**
 * The checks across keys, for a file that also has problems of single keys: run on the file with those
 * keys taken out (their defaults in their place), and kept only where no key a check reads was among
 * them, so every mistake shows in one run and none is blamed on a default.
 */
function crossProblemsBeside(raw: unknown, issues: readonly z.core.$ZodIssue[]): string[] {
  const broken = issues.flatMap((issue) =>
    issue.code === "unrecognized_keys" ? issue.keys.map((key) => [...issue.path.map(String), key]) : [issue.path.map(String)],
  );
  const pruned: unknown = structuredClone(raw);
  for (const path of broken) {
    const parent = rawAt(pruned, path.slice(0, -1));
    if (isTree(parent)) delete (parent as Record<string, unknown>)[path.at(-1) ?? ""];
    else return []; // a whole section is malformed: nothing across keys can be said
  }
  const reparsed = configSchema.safeParse(pruned);
  if (!reparsed.success) return [];
  const touches = (keys: readonly string[][]): boolean =>
    broken.some((path) => keys.some((key) => key.every((seg, i) => path[i] === undefined || path[i] === seg)));
  return CROSS_CHECKS.filter((check) => !touches(check.reads)).flatMap((check) => check.problems(reparsed.data, pruned));
}

function crossFieldProblems(config: Config, raw: unknown): string[] {
  return CROSS_CHECKS.flatMap((check) => check.problems(config, raw));
}

interface CrossCheck {
  /** The keys it reads: a check is left out when one of them (or a section above one) is itself wrong. */
  reads: string[][];
  problems(config: Config, raw: unknown): string[];
}

const CROSS_CHECKS: readonly CrossCheck[] = [
  {
    reads: [
      ["policy", "pressure", "low"],
      ["policy", "pressure", "high"],
    ],
    problems: pressureProblems,
  },
  {
    reads: [
      ["policy", "maxAge"],
      ["policy", "minAge"],
    ],
    problems: ageProblems,
  },
  {
    reads: [
      ["docker", "enabled"],
      ["runtimes", "containerd", "enabled"],
      ["runtimes", "containerd", "namespaces"],
    ],
    problems: namespaceProblems,
  },
];

function pressureProblems(config: Config, raw: unknown): string[] {
  const problems: string[] = [];
  const { pressure } = config.policy;
  if (!(pressure.low < pressure.high)) {
    // Name the key the person wrote: with only `high: 0.5`, the default low (0.7) is not their mistake.
    if (rawAt(raw, ["policy", "pressure", "low"]) !== undefined) {
      problems.push(`policy.pressure.low: expected a number below policy.pressure.high (${pressure.high}), got ${pressure.low}`);
    } else {
      problems.push(`policy.pressure.high: expected a number above policy.pressure.low (${pressure.low}), got ${pressure.high}`);
    }
  }
  return problems;
}

function ageProblems(config: Config, raw: unknown): string[] {
  const problems: string[] = [];
  const { maxAge, minAge } = config.policy;
  // Sessions younger than minAge are never reaped, so a smaller maxAge would silently mean minAge.
  // maxAge defaults to off, so when this trips the person wrote maxAge.
  if (maxAge !== null && maxAge < minAge) {
    const written = describeValue(rawAt(raw, ["policy", "maxAge"]));
    problems.push(`policy.maxAge: expected at least policy.minAge (${formatDurationExact(minAge)}), got ${written}`);
  }
  return problems;
}

function namespaceProblems(config: Config): string[] {
  const problems: string[] = [];
  // Docker's own containerd namespace read as containerd's too would count every Docker session twice.
  const namespaces = config.runtimes.containerd.namespaces;
  if (config.docker.enabled && config.runtimes.containerd.enabled !== false && namespaces.includes(DOCKER_CONTAINERD_NAMESPACE)) {
    problems.push(
      `runtimes.containerd.namespaces[${namespaces.indexOf(DOCKER_CONTAINERD_NAMESPACE)}]: "${DOCKER_CONTAINERD_NAMESPACE}" is Docker's namespace, whose sessions come through docker: (remove it, or set docker.enabled: false)`,
    );
  }
  return problems;
}
