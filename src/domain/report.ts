// The sessions report: one JSON shape for `sessions --json`, `run --once` and GET /sessions.
import type { CommandLineDisplay } from "../config/types.js";
import { containerCapacity, type Inventory } from "./types.js";
import type { DockerStatus, SessionDecision } from "./snapshot.js";
import type { ClientState } from "./types.js";
import type { KubernetesRef } from "./runtime.js";

export interface SessionsReport {
  takenAt: string;
  /** How much of each command line is shown (config key commandLine for /sessions; full in the CLI). */
  commandLine: CommandLineDisplay;
  pty: { allocated: number; max: number; reserve: number; containerCapacity: number; found: number; discrepancy: string | null };
  docker: DockerStatus;
  ptys: {
    devptsDev: string;
    index: number;
    owner: string;
    containerId: string | null;
    containerName: string | null;
    execId: string | null;
    /** The runtime of the container holding it; null for host ptys and ptys no runtime claims. */
    runtime: string | null;
    masterPids: number[];
    slavePids: number[];
    idleSeconds: number | null;
    outputIdleSeconds: number | null;
    /**
     * Held only by masters, nobody on the slave end: a leak no session explains, never reaped. `holder` is
     * the master holder's role; `sinceSeconds` null when one look (`sessions`) could not time it. null: not so.
     */
    masterOnly: {
      holder: string;
      runtime: string;
      containerId: string | null;
      holderPid: number;
      holderCommand: string | null;
      sinceSeconds: number | null;
    } | null;
  }[];
  sessions: {
    execId: string;
    containerId: string;
    containerName: string;
    /** docker, containerd, cri-o or podman. */
    runtime: string;
    /** The pod's namespace, name and container, from the container's labels; null outside Kubernetes. */
    kubernetes: Omit<KubernetesRef, "podUid"> | null;
    pid: number;
    tty: string;
    devptsDev: string;
    idleSeconds: number;
    outputIdleSeconds: number;
    ageSeconds: number;
    /** Shortened to argv[0], or null, as commandLine says: exec arguments may hold secrets. */
    command: string | null;
    /** Where the session's client is; `since` (ISO time) is when it was first seen gone. */
    client: { state: ClientState["state"]; since?: string; detail: string };
    state?: string;
    reason?: string | null;
    detail?: string;
  }[];
  unreadableProcesses: number;
}

const seconds = (ms: number): number => Math.max(0, Math.floor(ms / 1000));

/**
 * A command line as much as `display` allows: `mysql -pS3cret db` is `mysql` for argv0 and null for
 * off. argv[0] is cut at the first space: never more than the program, at worst a part of its path.
 */
export function shownCommand(command: string, display: CommandLineDisplay): string | null {
  if (display === "full") return command;
  if (display === "off") return null;
  return command.trimStart().split(/\s/, 1)[0] ?? "";
}

export interface ReportOptions {
  /** The policy's verdicts, when the report comes from a poll cycle. */
  decisions?: readonly SessionDecision[];
  commandLine: CommandLineDisplay;
}

export function sessionsReport(inventory: Inventory, docker: DockerStatus, nowMs: number, options: ReportOptions): SessionsReport {
  const byExec = new Map(options.decisions?.map((d) => [d.execId, d]));
  return {
    takenAt: new Date(nowMs).toISOString(),
    commandLine: options.commandLine,
    pty: {
      ...inventory.limits,
      containerCapacity: containerCapacity(inventory.limits),
      found: inventory.discrepancy.found,
      discrepancy: inventory.discrepancy.explanation,
    },
    docker,
    ptys: inventory.ptys.map((pty) => ({
      devptsDev: pty.devptsDev,
      index: pty.index,
      owner: pty.owner,
      containerId: pty.containerId,
      containerName: pty.containerName,
      execId: pty.execId,
      runtime: pty.runtime ?? null,
      masterPids: pty.masterPids,
      slavePids: pty.slavePids,
      idleSeconds: pty.atimeMs === null ? null : seconds(nowMs - pty.atimeMs),
      outputIdleSeconds: pty.mtimeMs === null ? null : seconds(nowMs - pty.mtimeMs),
      masterOnly: pty.masterOnly
        ? {
            holder: pty.masterOnly.role,
            runtime: pty.masterOnly.runtime,
            containerId: pty.masterOnly.containerId,
            holderPid: pty.masterOnly.holderPid,
            // Another program's arguments may hold secrets like an exec's: the same display rule.
            holderCommand: pty.masterOnly.holderCommand === null ? null : shownCommand(pty.masterOnly.holderCommand, options.commandLine),
            sinceSeconds: pty.masterOnly.sinceMs === null ? null : seconds(nowMs - pty.masterOnly.sinceMs),
          }
        : null,
    })),
    sessions: inventory.sessions.map((s) => {
      const decision = byExec.get(s.execId);
      return {
        execId: s.execId,
        containerId: s.containerId,
        containerName: s.containerName,
        runtime: s.runtime,
        kubernetes: s.kubernetes ? { namespace: s.kubernetes.namespace, pod: s.kubernetes.pod, container: s.kubernetes.container } : null,
        pid: s.pid,
        tty: `pts/${s.index}`,
        devptsDev: s.devptsDev,
        idleSeconds: seconds(nowMs - s.atimeMs),
        outputIdleSeconds: seconds(nowMs - s.mtimeMs),
        ageSeconds: seconds(nowMs - s.startedAtMs),
        command: shownCommand(s.command, options.commandLine),
        client: clientOf(s.client),
        ...(decision ? { state: decision.state, reason: decision.reason, detail: decision.detail } : {}),
      };
    }),
    unreadableProcesses: inventory.unreadablePids.length,
  };
}

function clientOf(client: ClientState | undefined): SessionsReport["sessions"][number]["client"] {
  if (client === undefined) return { state: "unknown", detail: "client not observed" };
  if (client.state === "gone") return { state: "gone", since: new Date(client.sinceMs).toISOString(), detail: client.detail };
  return { state: client.state, detail: client.detail };
}
