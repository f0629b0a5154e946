// Podman's client evidence, from the scan alone: an attached `podman exec -it` has its exec's conmon
// hold two fds on the pty master (its stdin and stdout copies); when the client goes, conmon closes
// the stdin copy and keeps one (observed with Podman 4.3.1).
import { unknownClient, type ClientEvidence, type ClientMemory, type ClientObservation, type EvidenceReach } from "../../domain/client.js";
import type { ClientState } from "../../domain/types.js";
import { ptyKey, type ExecSession, type ProcScan } from "../../domain/types.js";
import { monitorOf } from "../../domain/attribution.js";
import { ExecStreamTracker, type StreamSighting } from "../stream-clients.js";

/** The master fds an exec's conmon holds while its client is attached, and after. */
const ATTACHED_MASTER_FDS = 2;
const DETACHED_MASTER_FDS = 1;

/** Pure: what the scan says of one Podman session's stream to its client. */
export function podmanStreamSighting(session: Pick<ExecSession, "execId" | "ptyKey">, scan: Pick<ProcScan, "ptyFds" | "processes">): StreamSighting {
  const { execId } = session;
  const masters = scan.ptyFds.filter((fd) => fd.role === "master" && ptyKey(fd.devptsDev, fd.index) === session.ptyKey);
  const holders = new Set(masters.map((fd) => fd.pid));
  if (holders.size !== 1) return { execId, stream: "unknown", detail: `its pty master is held by ${holders.size} processes` };
  const pid = masters[0]?.pid ?? 0;
  const conmon = scan.processes.get(pid);
  if (conmon === undefined) return { execId, stream: "unknown", detail: `master holder ${pid} not read` };
  // Only an attached exec's conmon (`-u <id> … -i … --exec-attach`) holds a stdin copy: a `-d` one never had a client.
  const argv = conmon.cmdline;
  const monitor = monitorOf({ comm: conmon.comm, argv });
  if (monitor?.kind !== "conmon" || monitor.execId !== execId || !argv.includes("--exec-attach")) {
    return { execId, stream: "unknown", detail: `master holder ${pid} is not the attached conmon of this exec` };
  }
  if (!argv.includes("-i") && !argv.includes("--stdin"))
    return { execId, stream: "unknown", detail: `conmon pid ${pid} runs an exec without stdin (-i): no client to follow` };
  const fds = masters.reduce((sum, fd) => sum + (fd.fdCount ?? 1), 0);
  const holder = `${pid}@${conmon.startTicks}`;
  if (fds === ATTACHED_MASTER_FDS)
    return { execId, stream: "held", holder, detail: `conmon pid ${pid} holds the master for a client (stdin and stdout copies)` };
  if (fds === DETACHED_MASTER_FDS) return { execId, stream: "released", holder, detail: `conmon pid ${pid} holds one master fd (no stdin copy)` };
  return { execId, stream: "unknown", detail: `conmon pid ${pid} holds ${fds} master fds` };
}

export class PodmanClientEvidence implements ClientEvidence {
  private readonly tracker = new ExecStreamTracker(
    "a conmon with one master fd since ptyreaper first saw it: the client may never have been attached (podman exec -d), so unknown",
  );

  observe({ scan, sessions, nowMs }: ClientObservation): Map<string, ClientState> {
    const states = this.tracker.update(
      sessions.map((s) => podmanStreamSighting(s, scan)),
      nowMs,
    );
    for (const s of sessions) if (!states.has(s.execId)) states.set(s.execId, unknownClient("not observed"));
    return states;
  }

  links(): Map<string, string> {
    return this.tracker.links();
  }

  restore(memories: readonly ClientMemory[], downSinceMs: number): void {
    this.tracker.restore(memories, downSinceMs);
  }

  /** The scan alone tells: the evidence reaches wherever /proc does. */
  reach(): EvidenceReach {
    return { available: true };
  }
}
