// Whether an exec session's client is still there: the same three answers for every runtime.
import type { ClientState, ExecSession, ProcScan } from "./types.js";
import type { RuntimeView } from "./runtime.js";

export type ClientStateName = ClientState["state"];
export const CLIENT_STATES: readonly ClientStateName[] = ["attached", "gone", "unknown"];

export function unknownClient(detail: string): ClientState {
  return { state: "unknown", detail };
}

/** A session whose client state was never looked at (Docker disabled, no evidence reader). */
export const CLIENT_NOT_OBSERVED: ClientState = Object.freeze(unknownClient("client not observed"));

/** What one cycle offers a runtime's client evidence. */
export interface ClientObservation {
  scan: ProcScan;
  /** What this evidence's runtime answered this cycle; `available`: its connections are open, only then is its reach judged. */
  view: RuntimeView;
  sessions: readonly ExecSession[];
  nowMs: number;
}

/** Whether a runtime's client evidence can be gathered from where ptyreaper runs at all. */
export type EvidenceReach = { available: true } | { available: false; reason: string };

/**
 * One runtime's way of telling where each exec's client is, kept across cycles. Never throws: what
 * it cannot read makes the sessions concerned `unknown`.
 */
export interface ClientEvidence {
  /** The client state of each session, by exec id; a session left out is `unknown`. */
  observe(observation: ClientObservation): Map<string, ClientState>;
  /** What the last look found of the evidence's reach; null until one could tell (the runtime not up yet). */
  reach(): EvidenceReach | null;
  /**
   * The process whose life is each exec's evidence (`pid@startTicks`: its docker CLI, the stream's
   * holder), for the execs whose client is attached or gone now: what a restart needs to go on.
   */
  links?(): ReadonlyMap<string, string>;
  /**
   * What a previous run left, already matched to this run's execs (same exec id, same process): applied
   * before this cycle's look. `downSinceMs`: when that run last wrote, so a client recorded attached and
   * found gone now is gone from then at the latest.
   */
  restore?(memories: readonly ClientMemory[], downSinceMs: number, observation: ClientObservation): void;
}

/** One exec's client as a run left it: the process its evidence followed, and since when it is gone (null: attached). */
export interface ClientMemory {
  execId: string;
  link: string;
  goneSinceMs: number | null;
}

/** A process named across pid reuse, as links are written: `pid@startTicks`; null for anything else. */
export function parseLink(link: string): { pid: number; startTicks: number } | null {
  const match = /^([1-9][0-9]{0,9})@([0-9]{1,20})$/.exec(link);
  if (match === null) return null;
  return { pid: Number(match[1]), startTicks: Number(match[2]) };
}

/** One persisted session: its runtime, exec and the exec's process (pid + start time), and its client. */
export interface ClientRecord extends ClientMemory {
  runtime: string;
  pid: number;
  startTicks: number;
}

/**
 * The records that still describe a running session: same runtime, exec id, pid and start time. The
 * rest (an exec that ended, a pid reused) are ignored, so a file never makes a session stale that is not.
 */
export function matchRecords(
  records: readonly ClientRecord[],
  runtime: string,
  sessions: readonly Pick<ExecSession, "execId" | "pid" | "startTicks">[],
): ClientMemory[] {
  const running = new Map(sessions.map((s) => [s.execId, s]));
  return records
    .filter((r) => r.runtime === runtime && running.get(r.execId)?.pid === r.pid && running.get(r.execId)?.startTicks === r.startTicks)
    .map(({ execId, link, goneSinceMs }) => ({ execId, link, goneSinceMs }));
}

/** The records of one runtime's sessions this cycle: those with a known client (attached or gone) and a link. */
export function recordsOf(
  runtime: string,
  sessions: readonly Pick<ExecSession, "execId" | "pid" | "startTicks">[],
  states: ReadonlyMap<string, ClientState>,
  links: ReadonlyMap<string, string>,
): ClientRecord[] {
  const out: ClientRecord[] = [];
  for (const s of sessions) {
    const link = links.get(s.execId);
    const client = states.get(s.execId);
    if (link === undefined || client === undefined || client.state === "unknown") continue;
    out.push({ runtime, execId: s.execId, pid: s.pid, startTicks: s.startTicks, link, goneSinceMs: client.state === "gone" ? client.sinceMs : null });
  }
  return out;
}

/**
 * The reach of evidence read through sock_diag, which lists the sockets of the reader's own network
 * namespace only: when it does not show the runtime's listener (or, where that is enough, a connection
 * accepted on it), the runtime and its clients' connections live in another namespace: none can be paired.
 */
export function socketEvidenceReach(seen: boolean, socket: string): EvidenceReach {
  return seen ? { available: true } : { available: false, reason: otherNetworkNamespace(socket) };
}

export function otherNetworkNamespace(socket: string): string {
  return `sock_diag does not show the server's end of ${socket}: ptyreaper runs in another network namespace than the runtime (run it in the host's: --network host, hostNetwork: true)`;
}
