// The validated, normalised configuration: durations in milliseconds, null for "off".
import type { Level } from "pino";

export interface PolicyConfig {
  idleTimeout: number | null;
  idleIncludesOutput: boolean;
  maxAge: number | null;
  minAge: number;
  pressure: { high: number; low: number; minIdle: number };
  exemptLabel: string;
  exemptContainers: string[];
}

export interface Config {
  pollInterval: number;
  listen: { host: string; port: number };
  procRoot: string;
  docker: { enabled: boolean; socket: string; timeout: number };
  policy: PolicyConfig;
  reaper: { mode: "enforce" | "dry-run"; grace: number; maxPerCycle: number };
  log: { level: Level };
  /** exporter-toolkit web config file (TLS, basic auth), or null. */
  webConfigFile: string | null;
}
