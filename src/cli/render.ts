// The `w`-like sessions table for the terminal; the JSON shape is src/domain/report.ts.
import { formatDuration } from "../config/duration.js";
import { containerCapacity, type Inventory, type MasterOnly, type Pty } from "../domain/types.js";
import type { DockerStatus } from "../domain/snapshot.js";
import type { ClientState } from "../domain/types.js";
import { escapeUnprintable } from "../text.js";

/** Whether a runtime besides Docker answered, for the header line. */
export interface RuntimeStatus {
  runtime: string;
  available: boolean;
  error: string | null;
}

/** The CLIENT column: `attached`, `gone 2m` (for how long), `unknown`; `-` for a pty that is no exec session. */
function clientCell(client: ClientState | undefined, nowMs: number): string {
  if (client?.state === "gone") return `gone ${formatDuration(Math.max(0, nowMs - client.sinceMs))}`;
  return client?.state ?? "unknown";
}

/** A value for one table cell: unprintable characters escaped (src/text.ts), long values cut. */
export function printable(text: string, width = 40): string {
  const escaped = escapeUnprintable(text);
  return escaped.length > width ? `${escaped.slice(0, width - 1)}…` : escaped;
}

const COLUMNS = ["CONTAINER", "EXEC", "PID", "TTY", "IDLE", "OUT-IDLE", "AGE", "OWNER", "CLIENT", "COMMAND"] as const;

/**
 * A pty only masters hold: OWNER `master-only`, the holder's role and pid, and its command line. The
 * container as the runtime or the holder names it (conmon's -c), `runtime:` for all but Docker.
 */
function masterOnlyRow(pty: Pty, held: MasterOnly, ago: (ms: number | null) => string): string[] {
  const runtime = held.runtime === "none" || held.runtime === "docker" ? "" : `${held.runtime}:`;
  const container = pty.containerName ?? (held.containerId ? held.containerId.slice(0, 12) : null);
  return [
    printable(container === null ? "-" : `${runtime}${container}`, 40),
    "-",
    String(held.holderPid),
    `pts/${pty.index}@${pty.devptsDev}`,
    ago(pty.atimeMs),
    ago(pty.mtimeMs),
    ago(held.sinceMs),
    "master-only",
    "-",
    printable(`${held.role}: ${held.holderCommand ?? "?"}`, 60),
  ];
}

/** `w` for container ptys: a header line of kernel usage, then one row per pty. */
export function renderSessionsTable(inventory: Inventory, docker: DockerStatus, nowMs: number, runtimes: readonly RuntimeStatus[] = []): string {
  const { limits } = inventory;
  const capacity = containerCapacity(limits);
  const usedPct = capacity > 0 ? ((100 * limits.allocated) / capacity).toFixed(1) : "n/a";
  const lines = [
    `ptys ${limits.allocated} of ${limits.max}, containers can use ${capacity} (${usedPct}% used); ` +
      `docker: ${docker.available ? "available" : `unavailable (${printable(docker.error ?? "unknown", 200)})`}` +
      runtimes.map((r) => `; ${r.runtime}: ${r.available ? "available" : `unavailable (${printable(r.error ?? "unknown", 200)})`}`).join(""),
  ];
  if (inventory.discrepancy.explanation) {
    lines.push(
      `note: found ${inventory.discrepancy.found} ptys, kernel counts ${inventory.discrepancy.allocated}: ${inventory.discrepancy.explanation}`,
    );
  }
  const masterOnly = inventory.ptys.filter((p) => p.masterOnly).length;
  if (masterOnly > 0) {
    lines.push(
      `note: ${masterOnly} pty(s) held only by a master, with no process on the slave end (master-only): not sessions, never reaped; see "pty.nr grows but there is no stale session" in the README`,
    );
  }
  const sessionsByKey = new Map(inventory.sessions.map((s) => [s.ptyKey, s]));
  const ago = (ms: number | null): string => (ms === null ? "-" : formatDuration(Math.max(0, nowMs - ms)));
  const rows = inventory.ptys.map((pty: Pty) => {
    const session = sessionsByKey.get(pty.key);
    if (pty.masterOnly) return masterOnlyRow(pty, pty.masterOnly, ago);
    return [
      // Docker's rows stay as they were; another runtime's container is shown as `runtime:name`.
      printable(
        `${pty.runtime && pty.runtime !== "docker" ? `${pty.runtime}:` : ""}${pty.containerName ?? (pty.containerId ? pty.containerId.slice(0, 12) : "-")}`,
        40,
      ),
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
