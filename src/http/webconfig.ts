// The web config file of Prometheus' exporter-toolkit (`--web.config.file`): TLS and basic auth for the HTTP surface.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createSecureContext, type SecureVersion } from "node:tls";
import { dirname, resolve } from "node:path";
import { isScalar, parseDocument } from "yaml";
import { z } from "zod";
import { formatKeyPath } from "../config/load.js";
import { describeValue, oneLine } from "../config/schema.js";
import { ConfigError, errorMessage } from "../errors.js";
import type { FailureLimiter } from "./auth-limits.js";
import { BcryptBusyError } from "./bcrypt-pool.js";

/** What the server needs: TLS material (already read) and the users with their bcrypt hashes. */
export interface WebConfig {
  tls: WebTls | null;
  /** user → bcrypt hash; empty: no authentication. */
  basicAuthUsers: ReadonlyMap<string, string>;
  /** The files it was read from (the web config itself first), to notice when one changes. */
  files: readonly string[];
}

export interface WebTls {
  cert: Buffer;
  key: Buffer;
  /** Client CA; set with requestCert when clients must present a certificate it signed. */
  ca: Buffer | null;
  requestCert: boolean;
  minVersion: SecureVersion;
  maxVersion: SecureVersion | null;
}

/** exporter-toolkit's TLS version names and Node's. */
const TLS_VERSIONS: Readonly<Record<string, SecureVersion>> = {
  TLS10: "TLSv1",
  TLS11: "TLSv1.1",
  TLS12: "TLSv1.2",
  TLS13: "TLSv1.3",
};

/** The toolkit's client_auth_type values; Node's TLS can do the first and the last exactly. */
const CLIENT_AUTH_TYPES = [
  "NoClientCert",
  "RequestClientCert",
  "RequireAnyClientCert",
  "VerifyClientCertIfGiven",
  "RequireAndVerifyClientCert",
] as const;
const SUPPORTED_CLIENT_AUTH = new Set(["NoClientCert", "RequireAndVerifyClientCert"]);

// bcrypt's modular crypt format: $2a$, $2b$ or $2y$, a two-digit cost, 53 characters of salt and hash.
const BCRYPT_HASH = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;

const notSupported = (what: string) =>
  z.unknown().superRefine((_v, ctx) => ctx.addIssue({ code: "custom", message: `not supported by ptyreaper${what ? `: ${what}` : ""}` }));

const filePath = z.string({ error: (iss) => `expected a file path, got ${describeValue(iss.input)}` }).min(1, 'expected a file path, got ""');

const tlsSchema = z.strictObject(
  {
    cert_file: filePath.optional(),
    key_file: filePath.optional(),
    client_auth_type: z
      .enum(CLIENT_AUTH_TYPES, { error: (iss) => `expected one of ${CLIENT_AUTH_TYPES.join(", ")}, got ${describeValue(iss.input)}` })
      .optional(),
    client_ca_file: filePath.optional(),
    min_version: z
      .enum(Object.keys(TLS_VERSIONS), { error: (iss) => `expected TLS10, TLS11, TLS12 or TLS13, got ${describeValue(iss.input)}` })
      .optional(),
    max_version: z
      .enum(Object.keys(TLS_VERSIONS), { error: (iss) => `expected TLS10, TLS11, TLS12 or TLS13, got ${describeValue(iss.input)}` })
      .optional(),
    // Valid in the toolkit but not mapped to Node's TLS: refused rather than silently ignored.
    cipher_suites: notSupported("Node's defaults are used").optional(),
    curve_preferences: notSupported("Node's defaults are used").optional(),
    prefer_server_cipher_suites: notSupported("").optional(),
    client_allowed_sans: notSupported("").optional(),
  },
  { error: (iss) => (iss.code === "invalid_type" ? `expected a mapping of keys, got ${describeValue(iss.input)}` : undefined) },
);

const webConfigSchema = z.strictObject(
  {
    tls_server_config: tlsSchema.nullish(),
    basic_auth_users: z
      .record(
        z.string(),
        z
          .string({ error: (iss) => `expected a bcrypt hash like "$2y$10$…", got ${describeValue(iss.input)}` })
          .regex(BCRYPT_HASH, 'expected a bcrypt hash like "$2y$10$…" (htpasswd -nBC 10 USER)'),
        { error: (iss) => `expected a mapping of user: bcrypt hash, got ${describeValue(iss.input)}` },
      )
      .nullish(),
    http_server_config: notSupported("ptyreaper serves HTTP/1.1 and sets its own headers").optional(),
  },
  { error: (iss) => (iss.code === "invalid_type" ? `expected a mapping of keys, got ${describeValue(iss.input)}` : undefined) },
);

/** Reads one file named in the web config; tests inject their own. */
export type ReadFile = (path: string) => Buffer;

/**
 * Validates the web config text and reads the files it names (relative paths are relative to the
 * web config's directory, as in exporter-toolkit). Every problem is one line naming its key.
 */
export function parseWebConfig(text: string, source: string, readFile: ReadFile = readFileSync): WebConfig {
  const doc = parseDocument(text, { uniqueKeys: true, version: "1.2", merge: false, logLevel: "error" });
  const yamlProblems = [...doc.errors, ...doc.warnings].map(
    (e) => `invalid YAML: ${oneLine(e.message.split(/ at line \d+, column \d+/)[0] ?? e.message)}`,
  );
  if (yamlProblems.length > 0) throw new ConfigError(source, yamlProblems);
  const parsed = webConfigSchema.safeParse(doc.toJS({ maxAliasCount: 100 }) ?? {});
  if (!parsed.success) {
    throw new ConfigError(
      source,
      parsed.error.issues.flatMap((issue) =>
        issue.code === "unrecognized_keys"
          ? issue.keys.map((key) => `${formatKeyPath([...issue.path, key])}: unknown key`)
          : [`${formatKeyPath(issue.path)}: ${oneLine(issue.message)}`],
      ),
    );
  }
  const { tls_server_config: tls, basic_auth_users: users } = parsed.data;
  const baseDir = dirname(source);
  const problems: string[] = [];
  const files: string[] = [];
  // Basic auth sends "user:password": a colon cannot be in the user.
  for (const user of Object.keys(users ?? {})) {
    if (user === "" || user.includes(":")) problems.push(`${formatKeyPath(["basic_auth_users", user])}: a user name cannot contain ":" or be empty`);
  }
  const read = (key: string, path: string): Buffer | null => {
    const full = resolve(baseDir, path);
    files.push(full);
    try {
      return readFile(full);
    } catch (err) {
      problems.push(`tls_server_config.${key}: cannot read ${full}: ${oneLine(errorMessage(err))}`);
      return null;
    }
  };
  let webTls: WebTls | null = null;
  if (tls) {
    if (tls.cert_file === undefined) problems.push("tls_server_config.cert_file: missing (needed with key_file)");
    if (tls.key_file === undefined) problems.push("tls_server_config.key_file: missing (needed with cert_file)");
    const authType = tls.client_auth_type ?? "NoClientCert";
    const verifyClients = authType === "RequireAndVerifyClientCert";
    if (!SUPPORTED_CLIENT_AUTH.has(authType)) {
      problems.push(`tls_server_config.client_auth_type: ${authType} is not supported by ptyreaper; use NoClientCert or RequireAndVerifyClientCert`);
    } else if (verifyClients && tls.client_ca_file === undefined) {
      problems.push("tls_server_config.client_ca_file: missing (needed with client_auth_type RequireAndVerifyClientCert)");
    } else if (!verifyClients && tls.client_ca_file !== undefined) {
      problems.push("tls_server_config.client_ca_file: set without a client_auth_type that checks client certificates");
    }
    // Files are read only for a config that makes sense: one problem, not one per file.
    if (problems.length > 0) throw new ConfigError(source, problems);
    const cert = tls.cert_file === undefined ? null : read("cert_file", tls.cert_file);
    const key = tls.key_file === undefined ? null : read("key_file", tls.key_file);
    const ca = tls.client_ca_file === undefined ? null : read("client_ca_file", tls.client_ca_file);
    const minVersion = TLS_VERSIONS[tls.min_version ?? "TLS12"] ?? "TLSv1.2";
    const maxVersion = tls.max_version === undefined ? null : (TLS_VERSIONS[tls.max_version] ?? null);
    if (problems.length === 0 && cert && key) {
      webTls = { cert, key, ca, requestCert: verifyClients, minVersion, maxVersion };
      // A key that does not match the certificate, or a PEM that is not one, fails here and not at the first scrape.
      try {
        createSecureContext(secureContextOptions(webTls));
      } catch (err) {
        problems.push(`tls_server_config: the certificate and key cannot be used: ${oneLine(errorMessage(err))}`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return { tls: webTls, basicAuthUsers: new Map(Object.entries(users ?? {})), files };
}

/** No document, or one of only `---` and comments: null in YAML, `{}` to the schema. */
function isEmptyDocument(text: string): boolean {
  const doc = parseDocument(text, { logLevel: "silent" });
  return doc.errors.length === 0 && (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null));
}

/** A web config with no keys at all: an empty file, or comments only (what a file being rewritten looks like). */
export class EmptyWebConfigError extends ConfigError {}

/**
 * Reads and validates the web config file at `path`. `allowEmpty: false` refuses a document with no
 * keys (EmptyWebConfigError); at start an empty file means plain HTTP without auth, as in exporter-toolkit.
 */
export function loadWebConfig(path: string, readFile: ReadFile = readFileSync, options: { allowEmpty?: boolean } = {}): WebConfig {
  let text: string;
  try {
    text = readFile(path).toString("utf8");
  } catch (err) {
    throw new ConfigError(path, [`cannot read the web config: ${oneLine(errorMessage(err))}`], { cause: err });
  }
  if (options.allowEmpty === false && isEmptyDocument(text)) {
    throw new EmptyWebConfigError(path, ["the file is empty or holds only comments"]);
  }
  const web = parseWebConfig(text, path, readFile);
  return { ...web, files: [path, ...web.files] };
}

/** What identifies one version of a file: "" when it cannot be read. Kubernetes swaps a Secret's files by symlink, so the inode counts. */
export type FileSignature = (path: string) => string;

export const statSignature: FileSignature = (path) => {
  try {
    const st = statSync(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return ""; // missing for now (mid-rotation): a change like any other
  }
};

/** Why a changed web config was not applied; the values of ptyreaper_web_config_reload_failures_total's reason. */
export const WEB_RELOAD_REFUSALS = ["invalid", "empty", "drops_tls", "drops_auth", "needs_restart"] as const;
export type WebReloadRefusal = (typeof WEB_RELOAD_REFUSALS)[number];

/** A changed web config that is not applied, and why: the one in force stays. */
export class WebConfigRefusedError extends ConfigError {
  constructor(
    source: string,
    readonly reason: WebReloadRefusal,
    problems: string[],
    options?: { cause?: unknown },
  ) {
    super(source, problems, options);
  }
}

/**
 * Why `next` may not replace `inForce`, or null. Fails closed: a reload never takes away TLS, client
 * certificates or passwords that are in force (a file caught half-written must not open the door), and
 * what a running listener cannot change (turning TLS or client certificates on) waits for a restart.
 */
export function reloadRefusal(inForce: WebConfig, next: WebConfig): { reason: WebReloadRefusal; problem: string } | null {
  if (inForce.tls && !next.tls)
    return { reason: "drops_tls", problem: "tls_server_config: gone, but TLS is in force; turning it off needs a restart" };
  if (inForce.tls?.requestCert && !next.tls?.requestCert) {
    return {
      reason: "drops_tls",
      problem: "tls_server_config.client_auth_type: client certificates are required now; turning that off needs a restart",
    };
  }
  if (inForce.basicAuthUsers.size > 0 && next.basicAuthUsers.size === 0) {
    return { reason: "drops_auth", problem: "basic_auth_users: gone, but basic auth is in force; turning it off needs a restart" };
  }
  if (!inForce.tls && next.tls) return { reason: "needs_restart", problem: "tls_server_config: turning TLS on needs a restart" };
  if (inForce.tls && next.tls && !inForce.tls.requestCert && next.tls.requestCert) {
    return { reason: "needs_restart", problem: "tls_server_config.client_auth_type: requiring client certificates needs a restart" };
  }
  return null;
}

/**
 * Notices when the web config or a certificate, key or CA it names changes, and reads it again, so a
 * renewed certificate (certbot, cert-manager) or a new password is served without a restart, as
 * exporter-toolkit does. A change that is empty, does not parse, or would drop TLS or basic auth in
 * force is refused (see reloadRefusal): the config in force, and the files it names, stay.
 */
export class WebConfigReloader {
  /** How often the files are checked: a few stat calls. */
  readonly intervalMs: number;
  private readonly path: string;
  private readonly load: (path: string) => WebConfig;
  private readonly signature: FileSignature;
  private inForce: WebConfig;
  private seen: string;

  constructor(path: string, current: WebConfig, deps: { load?: (path: string) => WebConfig; signature?: FileSignature; intervalMs?: number } = {}) {
    this.intervalMs = deps.intervalMs ?? 10_000;
    this.path = path;
    this.load = deps.load ?? ((p) => loadWebConfig(p, readFileSync, { allowEmpty: false }));
    this.signature = deps.signature ?? statSignature;
    this.inForce = current;
    this.seen = this.signatures();
  }

  /**
   * The new config when a file changed since the last poll and it may replace the one in force; null
   * when nothing changed. Throws WebConfigRefusedError when it changed and is refused: once per
   * change, the caller keeps the old.
   */
  poll(): WebConfig | null {
    const now = this.signatures();
    if (now === this.seen) return null;
    this.seen = now;
    let next: WebConfig;
    try {
      next = this.load(this.path);
    } catch (err) {
      const reason = err instanceof EmptyWebConfigError ? "empty" : "invalid";
      const problems = err instanceof ConfigError ? err.problems : [oneLine(errorMessage(err))];
      throw new WebConfigRefusedError(err instanceof ConfigError ? err.source : this.path, reason, problems, { cause: err });
    }
    const refusal = reloadRefusal(this.inForce, next);
    if (refusal) throw new WebConfigRefusedError(this.path, refusal.reason, [refusal.problem]);
    this.inForce = next;
    this.seen = this.signatures();
    return next;
  }

  private signatures(): string {
    return this.inForce.files.map((f) => this.signature(f)).join("\n");
  }
}

/** The options of tls.createSecureContext and https.createServer for this TLS config. */
export function secureContextOptions(tls: WebTls): {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
  minVersion: SecureVersion;
  maxVersion?: SecureVersion;
} {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.ca ? { ca: tls.ca } : {}),
    requestCert: tls.requestCert,
    rejectUnauthorized: tls.requestCert,
    minVersion: tls.minVersion,
    ...(tls.maxVersion ? { maxVersion: tls.maxVersion } : {}),
  };
}

// ---- Basic auth

export type BcryptCompare = (password: string, hash: string) => Promise<boolean>;

/** How many outcomes of each kind are remembered; a scraper or two need one success each. */
const AUTH_CACHE_ENTRIES = 100;
/** The unknown user's cost when no user is configured (auth is then off anyway). */
const DEFAULT_BCRYPT_COST = 10;
const BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Why a request was not let in: no or malformed credentials, a wrong pair, or a check not run now. */
export const AUTH_REFUSALS = ["missing", "wrong", "limited", "busy", "error"] as const;
export type AuthRefusal = (typeof AUTH_REFUSALS)[number];
export type AuthVerdict =
  | { ok: true }
  | { ok: false; reason: "missing" | "wrong" }
  | { ok: false; reason: "limited" | "busy"; retryAfterSec: number }
  | { ok: false; reason: "error"; error: unknown };

/** The cost of a bcrypt hash ("$2b$12$…" → 12). */
export function bcryptCost(hash: string): number {
  return Number(/^\$2[aby]\$(\d\d)\$/.exec(hash)?.[1] ?? DEFAULT_BCRYPT_COST);
}

/**
 * A well-formed bcrypt hash that no password matches, at `cost`: checking an unknown user against it
 * takes as long as checking a user of that cost. Random salt and digest: nothing to precompute.
 */
export function unknownUserHash(cost: number): string {
  const chars = Array.from(randomBytes(53), (b) => BCRYPT_ALPHABET[b & 63]).join("");
  return `$2b$${String(cost).padStart(2, "0")}$${chars}`;
}

export interface BasicAuthOptions {
  /** Per-address limit on bcrypt checks that fail; none: unlimited (tests of the cache). */
  limiter?: FailureLimiter;
  /** Monotonic ms for the limiter. */
  now?: () => number;
}

/**
 * Checks `Authorization: Basic` credentials against the bcrypt hashes. bcrypt costs tens of ms of CPU
 * by design, so it runs where `compare` puts it (the server's BcryptPool: worker threads with a cap),
 * and each outcome is remembered, keyed by a salted SHA-256, never the password: a scraper sends the
 * same credentials every few seconds and is checked once. Successes and failures are remembered
 * apart, so a stream of wrong guesses cannot push a scraper's success out; concurrent checks of the
 * same credentials share one run. A check that would run bcrypt first takes a token from the client
 * address's bucket (`limiter`); a cached answer costs nothing and is not limited, so a scraper that
 * shares an address with a guesser keeps its access.
 *
 * An unknown user is checked against a hash of the highest cost among the configured ones, made here
 * (at config load): as slow as a wrong password of the most expensive user.
 */
export class BasicAuth {
  private readonly users: ReadonlyMap<string, string>;
  private readonly compare: BcryptCompare;
  private readonly limiter: FailureLimiter | null;
  private readonly now: () => number;
  private readonly unknownUserHash: string;
  private readonly salt = randomBytes(16);
  private readonly successes = new Map<string, true>();
  private readonly failures = new Map<string, true>();
  private readonly running = new Map<string, Promise<AuthVerdict>>();
  /** bcrypt runs so far, for tests. */
  bcryptRuns = 0;

  constructor(users: ReadonlyMap<string, string>, compare: BcryptCompare, options: BasicAuthOptions = {}) {
    this.users = users;
    this.compare = compare;
    this.limiter = options.limiter ?? null;
    this.now = options.now ?? (() => performance.now());
    const cost = Math.max(0, ...[...users.values()].map(bcryptCost));
    this.unknownUserHash = unknownUserHash(users.size === 0 ? DEFAULT_BCRYPT_COST : cost);
  }

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** The hash an unknown user is checked against. */
  get dummyHash(): string {
    return this.unknownUserHash;
  }

  /** True when the header carries a known user with the right password. */
  async check(authorization: string | undefined, address = ""): Promise<boolean> {
    return (await this.verify(authorization, address)).ok;
  }

  /** The verdict on one request's credentials from `address`; synchronous up to the bcrypt run. */
  verify(authorization: string | undefined, address: string): Promise<AuthVerdict> {
    const credentials = parseBasicAuthorization(authorization);
    if (credentials === null) return Promise.resolve({ ok: false, reason: "missing" });
    const { user, password } = credentials;
    const key = createHash("sha256").update(this.salt).update(user).update("\0").update(password).digest("base64");
    if (this.successes.has(key)) {
      // Most recently used last: the entry pushed out is one no scraper sends any more.
      this.successes.delete(key);
      this.successes.set(key, true);
      return Promise.resolve({ ok: true });
    }
    if (this.failures.has(key)) return Promise.resolve({ ok: false, reason: "wrong" });
    const running = this.running.get(key);
    if (running) return running;
    const admission = this.limiter?.take(address, this.now()) ?? { ok: true };
    if (!admission.ok) return Promise.resolve({ ok: false, reason: "limited", retryAfterSec: Math.max(1, Math.ceil(admission.retryAfterMs / 1000)) });
    const hash = this.users.get(user);
    this.bcryptRuns += 1;
    const verdict = this.compare(password, hash ?? this.unknownUserHash).then(
      (same): AuthVerdict => {
        if (same && hash !== undefined) {
          this.limiter?.giveBack(address, this.now());
          remember(this.successes, key);
          return { ok: true };
        }
        remember(this.failures, key);
        return { ok: false, reason: "wrong" };
      },
      (err: unknown): AuthVerdict => {
        // Not a failure of the client's: not remembered, and its token is returned.
        this.limiter?.giveBack(address, this.now());
        if (err instanceof BcryptBusyError) return { ok: false, reason: "busy", retryAfterSec: 1 };
        return { ok: false, reason: "error", error: err };
      },
    );
    this.running.set(key, verdict);
    void verdict.finally(() => this.running.delete(key));
    return verdict;
  }
}

/** Adds `key` to a bounded cache; the oldest entry (first in Map order) goes. */
function remember(cache: Map<string, true>, key: string): void {
  cache.set(key, true);
  if (cache.size > AUTH_CACHE_ENTRIES) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
}

/** `Basic base64(user:password)` → its parts; null for anything else. */
export function parseBasicAuthorization(header: string | undefined): { user: string; password: string } | null {
  if (header === undefined) return null;
  const m = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (m === null || m[1] === undefined) return null;
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
