// Hand-built Snapshots for metrics and HTTP tests: only the fields a test names differ from a quiet host.
import type { SessionDecision, SessionState, Snapshot } from "../../../src/domain/snapshot.js";
import type { Pty, PtyLimits, PtyOwner } from "../../../src/domain/types.js";

let nextIndex = 0;

export function makePty(owner: PtyOwner, container?: { id: string; name: string | null }, index = nextIndex++): Pty {
  return {
    key: `0:99:${index}`,
    devptsDev: "0:99",
    index,
    owner,
    containerId: container?.id ?? null,
    containerName: container ? container.name : null,
    execId: owner === "exec" ? `exec-${index}` : null,
    masterPids: [1000 + index],
    slavePids: [2000 + index],
    atimeMs: 1_700_000_000_000,
    mtimeMs: 1_700_000_000_000,
    leaderPid: 2000 + index,
    leaderCommand: "sh",
    leaderStartedAtMs: 1_699_999_000_000,
  };
}

export function makeDecision(state: SessionState, execId = `exec-${nextIndex++}`): SessionDecision {
  return {
    execId,
    state,
    reason: state === "stale" ? "idle" : null,
    detail: state === "stale" ? "idle 5h >= idleTimeout 4h" : state,
  };
}

export function makeSnapshot(parts: {
  limits?: Partial<PtyLimits>;
  ptys?: Pty[];
  decisions?: SessionDecision[];
  dockerAvailable?: boolean;
  takenAtMs?: number;
}): Snapshot {
  const ptys = parts.ptys ?? [];
  const limits: PtyLimits = { allocated: ptys.length, max: 4096, reserve: 1024, ...parts.limits };
  return {
    takenAtMs: parts.takenAtMs ?? 1_700_000_000_000,
    inventory: {
      limits,
      ptys,
      sessions: [],
      discrepancy: { found: ptys.length, allocated: limits.allocated, explanation: null },
      unreadablePids: [],
    },
    docker: { available: parts.dockerAvailable ?? true, error: null },
    decisions: parts.decisions ?? [],
  };
}
