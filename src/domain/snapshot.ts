// What one poll cycle produced: read by metrics, /sessions and the reaper.
import type { RuntimeName } from "./attribution.js";
import type { Inventory } from "./types.js";
import type { RuntimeView } from "./runtime.js";

/** A container holding more than `policy.pressure.containerShare` of the container capacity. */
export interface ContainerOverShare {
  containerId: string;
  containerName: string | null;
  runtime: RuntimeName | null;
  ptys: number;
  /** ptys ÷ container capacity. */
  share: number;
}

export type SessionState = "active" | "idle" | "stale" | "exempt";
export const SESSION_STATES: readonly SessionState[] = ["active", "idle", "stale", "exempt"];

export type ReapReason = "idle" | "max_age" | "pressure" | "orphaned";
export const REAP_REASONS: readonly ReapReason[] = ["idle", "max_age", "pressure", "orphaned"];

/** The policy's verdict on one exec session, with a reason a person can read. */
export interface SessionDecision {
  execId: string;
  state: SessionState;
  /** Set when state is "stale". */
  reason: ReapReason | null;
  /** e.g. "idle 4h12m >= idleTimeout 4h" or "exempt: container label ptyreaper.exempt=true". */
  detail: string;
}

/** Docker as the sessions report shows it (its `docker` field). */
export interface DockerStatus {
  /** Reachable, and its data is current enough to act on. */
  available: boolean;
  error: string | null;
}

/** Docker's status from its view this cycle; without one, Docker is not in use. */
export function dockerStatusOf(views: readonly RuntimeView[]): DockerStatus {
  const docker = views.find((view) => view.runtime === "docker");
  return docker ? { available: docker.available, error: docker.error } : { available: false, error: "disabled in config (docker.enabled: false)" };
}

export interface Snapshot {
  takenAtMs: number;
  inventory: Inventory;
  /** Docker's view as the report shows it (dockerStatusOf). */
  docker: DockerStatus;
  /** What each runtime in use answered this cycle (Docker's first, when in use). */
  runtimes: RuntimeView[];
  decisions: SessionDecision[];
  /** Containers holding more than policy.pressure.containerShare of the container capacity; absent: none looked at. */
  overShare?: ContainerOverShare[];
}
