// The sessions report: one JSON shape for `sessions --json` and GET /sessions, and the `w`-like table.
import { formatDuration } from "../config/duration.js";
import { containerCapacity, type Inventory, type Pty } from "../domain/types.js";
import type { DockerStatus, SessionDecision } from "../domain/snapshot.js";
import type { ClientState } from "../domain/client.js";

export interface SessionsReport {
  takenAt: string;
  pty: { allocated: number; max: number; reserve: number; containerCapacity: number; found: number; discrepancy: string | null };
  docker: DockerStatus;
  ptys: {
    devptsDev: string;
    index: number;
    owner: string;
    containerId: string | null;
    containerName: string | null;
    execId: string | null;
    masterPids: number[];
    slavePids: number[];
    idleSeconds: number | null;
    outputIdleSeconds: number | null;
  }[];
  sessions: {
    execId: string;
    containerId: string;
    containerName: string;
    pid: number;
    tty: string;
    devptsDev: string;
    idleSeconds: number;
    outputIdleSeconds: number;
    ageSeconds: number;
    command: string;
    /** Where the session's client is; `since` (ISO time) is when it was first seen gone. */
    client: { state: ClientState["state"]; since?: string; detail: string };
    state?: string;
    reason?: string | null;
    detail?: string;
  }[];
  unreadableProcesses: number;
}

const seconds = (ms: number): number => Math.max(0, Math.floor(ms / 1000));

export function sessionsReport(inventory: Inventory, docker: DockerStatus, nowMs: number, decisions?: readonly SessionDecision[]): SessionsReport {
  const byExec = new Map(decisions?.map((d) => [d.execId, d]));
  return {
    takenAt: new Date(nowMs).toISOString(),
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
      masterPids: pty.masterPids,
      slavePids: pty.slavePids,
      idleSeconds: pty.atimeMs === null ? null : seconds(nowMs - pty.atimeMs),
      outputIdleSeconds: pty.mtimeMs === null ? null : seconds(nowMs - pty.mtimeMs),
    })),
    sessions: inventory.sessions.map((s) => {
      const decision = byExec.get(s.execId);
      return {
        execId: s.execId,
        containerId: s.containerId,
        containerName: s.containerName,
        pid: s.pid,
        tty: `pts/${s.index}`,
        devptsDev: s.devptsDev,
        idleSeconds: seconds(nowMs - s.atimeMs),
        outputIdleSeconds: seconds(nowMs - s.mtimeMs),
        ageSeconds: seconds(nowMs - s.startedAtMs),
        command: s.command,
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

/** The CLIENT column: `attached`, `gone 2m` (for how long), `unknown`; `-` for a pty that is no exec session. */
function clientCell(client: ClientState | undefined, nowMs: number): string {
  if (client?.state === "gone") return `gone ${formatDuration(Math.max(0, nowMs - client.sinceMs))}`;
  return client?.state ?? "unknown";
}

/**
 * Control characters, bidi overrides and line separators would break or disguise a table row
 * (a U+202E in an exec argument reverses the rest of the line): escape them, and cut long values.
 */
export function printable(text: string, width = 40): string {
  const escaped = text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
  return escaped.length > width ? `${escaped.slice(0, width - 1)}…` : escaped;
}

// C0 and C1 controls, DEL, bidi marks, embeddings, overrides and isolates, line/paragraph separators.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

const COLUMNS = ["CONTAINER", "EXEC", "PID", "TTY", "IDLE", "OUT-IDLE", "AGE", "OWNER", "CLIENT", "COMMAND"] as const;

/** `w` for container ptys: a header line of kernel usage, then one row per pty. */
export function renderSessionsTable(inventory: Inventory, docker: DockerStatus, nowMs: number): string {
  const { limits } = inventory;
  const capacity = containerCapacity(limits);
  const usedPct = capacity > 0 ? ((100 * limits.allocated) / capacity).toFixed(1) : "n/a";
  const lines = [
    `ptys ${limits.allocated} of ${limits.max}, containers can use ${capacity} (${usedPct}% used); ` +
      `docker: ${docker.available ? "available" : `unavailable (${printable(docker.error ?? "unknown", 200)})`}`,
  ];
  if (inventory.discrepancy.explanation) {
    lines.push(`note: found ${inventory.discrepancy.found} ptys, kernel counts ${inventory.discrepancy.allocated}: ${inventory.discrepancy.explanation}`);
  }
  const sessionsByKey = new Map(inventory.sessions.map((s) => [s.ptyKey, s]));
  const ago = (ms: number | null): string => (ms === null ? "-" : formatDuration(Math.max(0, nowMs - ms)));
  const rows = inventory.ptys.map((pty: Pty) => {
    const session = sessionsByKey.get(pty.key);
    return [
      printable(pty.containerName ?? (pty.containerId ? pty.containerId.slice(0, 12) : "-"), 40),
      session ? session.execId.slice(0, 12) : "-",
      String(session?.pid ?? pty.leaderPid ?? "-"),
      `pts/${pty.index}@${pty.devptsDev}`,
      ago(pty.atimeMs),
      ago(pty.mtimeMs),
      ago(session?.startedAtMs ?? pty.leaderStartedAtMs),
      pty.owner,
      session ? clientCell(session.client, nowMs) : "-",
      printable(session?.command ?? pty.leaderCommand ?? "-", 60),
    ];
  });
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)));
  const format = (cells: readonly string[]): string =>
    cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ");
  lines.push(format(COLUMNS));
  for (const row of rows) lines.push(format(row));
  if (inventory.unreadablePids.length > 0) {
    lines.push(`(${inventory.unreadablePids.length} process(es) could not be read: ptyreaper needs root to see every holder)`);
  }
  return lines.join("\n") + "\n";
}
