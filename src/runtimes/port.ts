// What every container runtime answers for ptyreaper: its running containers, their exec sessions with pids, and a kill.
// One adapter per runtime implements it (runtimes/docker, runtimes/containerd, runtimes/podman).
// The words it answers in (containers, execs, Kubernetes identity) are the domain's: domain/runtime.ts.
import type { RuntimeName } from "../domain/attribution.js";
import type { ContainerRef, RuntimeContainer, RuntimeExec, RuntimeView } from "../domain/runtime.js";

export type ExecSignal = "SIGHUP" | "SIGTERM" | "SIGKILL";

/**
 * What a kill through the runtime did: "signalled" (the runtime accepted it), "gone" (no such exec
 * any more), "unsupported" (this runtime or version has no call for it: the caller falls back to
 * signals by pid, with every safety check).
 */
export type KillOutcome = "signalled" | "gone" | "unsupported";

export interface RuntimePort {
  readonly runtime: RuntimeName;
  /** Where it connects, for messages. */
  readonly endpoint: string;
  /** The runtime's version; rejects when it cannot be reached. */
  version(): Promise<string>;
  /** Running containers (in every configured namespace). */
  listContainers(): Promise<RuntimeContainer[]>;
  /** null when the container is gone. */
  getContainer(ref: ContainerRef): Promise<RuntimeContainer | null>;
  /** The container's exec sessions that the runtime still records ([] when the container is gone). */
  listExecs(ref: ContainerRef): Promise<RuntimeExec[]>;
  /**
   * This cycle's view, from what the adapter keeps current itself (Docker's event cache), so a steady cycle asks
   * the runtime nothing; absent: a cycle lists the containers and their execs. Never rejects: a runtime that
   * does not answer is `available: false`, with why.
   */
  currentView?(): Promise<RuntimeView>;
  /** Signals one exec through the runtime; absent when the runtime has no such call (its execs are signalled by pid). */
  killExec?(exec: Pick<RuntimeExec, "id" | "container">, signal: ExecSignal): Promise<KillOutcome>;
  /**
   * The runtime may go on reporting an exec running for many seconds after its processes are gone (dockerd):
   * then the pty's release decides whether it ended, not the runtime's answer.
   */
  readonly reportsExitLate?: boolean;
  close(): void;
}

/** Signal numbers on Linux, as containerd's Kill takes them. */
export const SIGNAL_NUMBERS: Readonly<Record<ExecSignal, number>> = { SIGHUP: 1, SIGKILL: 9, SIGTERM: 15 };
