// What one poll cycle produced: read by metrics, /sessions and the reaper.
import type { ContainerOverShare } from "./policy.js";
import type { Inventory } from "./types.js";

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

export interface DockerStatus {
  /** Reachable, and its data is current enough to act on. */
  available: boolean;
  error: string | null;
}

export interface Snapshot {
  takenAtMs: number;
  inventory: Inventory;
  docker: DockerStatus;
  decisions: SessionDecision[];
  /** Containers holding more than policy.pressure.containerShare of the container capacity; absent: none looked at. */
  overShare?: ContainerOverShare[];
}
