// Hand-built Snapshots for metrics and HTTP tests: only the fields a test names differ from a quiet host.
import type { SessionDecision, SessionState, Snapshot } from "../../../src/domain/snapshot.js";
import type { ExecSession, Pty, PtyLimits, PtyOwner } from "../../../src/domain/types.js";
import type { ClientStateName } from "../../../src/domain/client.js";

let nextIndex = 0;

export function makePty(owner: PtyOwner, container?: { id: string; name: string | null }, index = nextIndex++): Pty {
  return {
    key: `0:99:${index}`,
    devptsDev: "0:99",
    index,
    owner,
    containerId: container?.id ?? null,
    containerName: container ? container.name : null,
    // A container on a Docker host; a test of another runtime sets its own.
    runtime: container ? "docker" : null,
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

/** An exec session whose client is in `client` state (gone since a minute before 1_700_000_000_000). */
export function makeSessionFor(client: ClientStateName, index = nextIndex++): ExecSession {
  return {
    execId: `exec-${index}`,
    runtime: "docker",
    containerId: "c".repeat(64),
    containerName: "web",
    containerLabels: {},
    pid: 3000 + index,
    startTicks: 100 + index,
    pidNs: "4026532000",
    nsPid: 7,
    exemptByEnv: false,
    ptyKey: `0:99:${index}`,
    devptsDev: "0:99",
    index,
    holderPids: [3000 + index],
    startedAtMs: 1_699_999_000_000,
    atimeMs: 1_700_000_000_000,
    mtimeMs: 1_700_000_000_000,
    command: "sh",
    client:
      client === "gone"
        ? { state: "gone", sinceMs: 1_699_999_940_000, detail: "docker CLI pid 9 exited" }
        : { state: client, detail: "docker CLI pid 9" },
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
  sessions?: ExecSession[];
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
      sessions: parts.sessions ?? [],
      discrepancy: { found: ptys.length, allocated: limits.allocated, explanation: null },
      unreadablePids: [],
    },
    docker: { available: parts.dockerAvailable ?? true, error: null },
    runtimes: [{ runtime: "docker", available: parts.dockerAvailable ?? true, error: null, containers: [], execs: [] }],
    decisions: parts.decisions ?? [],
  };
}
