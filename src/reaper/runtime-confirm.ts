// What the reaper asks a runtime other than Docker before it acts on one of its sessions, and how long its ptys take to be freed.
import type { RuntimePort } from "../runtimes/port.js";
import type { ExecSession } from "../domain/types.js";

/**
 * How long after its processes are gone a session's pty may still be allocated before the attempt counts
 * as failed. containerd 1.6's shim closes an exec's console only when Go's garbage collector finalizes it
 * (observed 25–31 s after the kill; the runtime forces a collection at least every two minutes), so a
 * containerd session is given that long; the others free it at once (RELEASE_TIMEOUT_MS in reaper.ts applies).
 */
export const CONTAINERD_RELEASE_MS = 150_000;

export function runtimeReleaseMs(session: Pick<ExecSession, "runtime">): number {
  return session.runtime === "containerd" ? CONTAINERD_RELEASE_MS : 0;
}

export type RuntimeConfirmation =
  | { verdict: "running"; initPid: number | null; why: string }
  | { verdict: "ended"; initPid: number | null; why: string }
  | { verdict: "container_gone"; initPid: null; why: string }
  | { verdict: "refused"; initPid: null; why: string };

/** The runtime must still record this exec, running with the pid the scan saw, in a running container (whose init it names). */
export async function confirmRuntimeSession(port: RuntimePort, session: ExecSession): Promise<RuntimeConfirmation> {
  const ref = { namespace: session.runtimeNamespace ?? null, id: session.containerId };
  const container = await port.getContainer(ref);
  if (!container) return { verdict: "container_gone", initPid: null, why: "container no longer running" };
  const exec = (await port.listExecs(ref)).find((e) => e.id === session.execId);
  if (!exec || !exec.running || exec.pid <= 0) return { verdict: "ended", initPid: container.initPid, why: "exec no longer running" };
  if (exec.pid !== session.pid) return { verdict: "refused", initPid: null, why: `exec pid is now ${exec.pid}, scan saw ${session.pid}` };
  return { verdict: "running", initPid: container.initPid, why: "running" };
}
