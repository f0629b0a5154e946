// The validated, normalised configuration: durations in milliseconds, null for "off".
import type { Level } from "pino";

export interface PolicyConfig {
  idleTimeout: number | null;
  idleIncludesOutput: boolean;
  maxAge: number | null;
  minAge: number;
  /** containerShare: a container holding more than this share of container capacity is named (metric, alert, log). */
  pressure: { high: number; low: number; minIdle: number; containerShare: number };
  exemptLabel: string;
  exemptContainers: string[];
  /** Kubernetes namespaces (patterns) whose pods' sessions are never reaped; absent: none. */
  exemptNamespaces: string[];
  /** Reap a session whose client has been gone this long (and without input as long); null: off. */
  orphanGrace: number | null;
}

/** How much of an exec's command line /sessions shows: all of it, the program only, or nothing. */
export type CommandLineDisplay = "full" | "argv0" | "off";
/** `auto`: used when its socket exists at start; true: required (a missing socket is reported); false: never used. */
export type RuntimeEnabled = "auto" | boolean;

/** Container runtimes besides Docker (which keeps `docker:`). */
export interface RuntimesConfig {
  containerd: { enabled: RuntimeEnabled; socket: string; namespaces: string[]; timeout: number };
  podman: { enabled: RuntimeEnabled; socket: string; timeout: number };
}

/** The Docker Engine. `true` differs from the other runtimes': a missing socket is an engine that is down, not a config error. */
export interface DockerConfig {
  enabled: RuntimeEnabled;
  socket: string;
  timeout: number;
}

export interface Config {
  pollInterval: number;
  /** A full pass over every process at least this often (ms); steady cycles read only what changed (procfs/scan.ts). */
  fullScanInterval: number;
  listen: { host: string; port: number };
  procRoot: string;
  /** Where the daemon keeps what must survive a restart (its exec clients' states and pairings). */
  stateDir: string;
  docker: DockerConfig;
  runtimes: RuntimesConfig;
  policy: PolicyConfig;
  reaper: { mode: "enforce" | "dry-run"; grace: number; maxPerCycle: number };
  log: { level: Level };
  commandLine: CommandLineDisplay;
  /** exporter-toolkit web config file (TLS, basic auth), or null. */
  webConfigFile: string | null;
  /** How long a pty must be held only by masters before it is named master-only (ms). */
  masterOnlyGrace: number;
  /**
   * What the HTTP surface serves beyond metrics and health; `sessions: false` answers 404 on /sessions.
   * `healthListen`: a loopback address serving /healthz and /readyz only, without TLS or credentials; null: none.
   */
  http: { sessions: boolean; healthListen: { host: string; port: number } | null };
}
