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
}

/**
 * One runtime's way of telling where each exec's client is, kept across cycles. Never throws: what
 * it cannot read makes the sessions concerned `unknown`.
 */
export interface ClientEvidence {
  /** The client state of each session, by exec id; a session left out is `unknown`. */
  observe(observation: ClientObservation): Map<string, ClientState>;
}
