// Whether an exec session's client is still there: the same three answers for every runtime.
import type { DockerView, ExecSession, ProcScan } from "./types.js";

/**
 * `attached`: the session's client was identified and still holds its connection to the engine.
 * `gone`: the identified client exited or dropped its connection, at `sinceMs` at the latest (the
 * first cycle that saw it gone). `unknown`: no evidence either way (a remote client, two candidates
 * that cannot be told apart, a runtime without a per-exec signal): only the idle policy applies.
 */
export type ClientState =
  | { state: "attached"; detail: string }
  | { state: "gone"; sinceMs: number; detail: string }
  | { state: "unknown"; detail: string };

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
  docker: DockerView;
  sessions: readonly ExecSession[];
  nowMs: number;
  /** This evidence's runtime answered this cycle (its connections are open): only then is its reach judged. */
  runtimeUp?: boolean;
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
