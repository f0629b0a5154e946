// Which client evidence each opened runtime gets: containerd's CRI stdout FIFOs, Podman's conmon master fds.
import type { Logger } from "pino";
import type { ClientEvidence, EvidenceReach } from "../domain/client.js";
import type { FdReadCut } from "../procfs/fd-budget.js";
import type { ProcFs } from "../procfs/procfs.js";
import { loadUnixPeersReader } from "../procfs/sockets.js";
import type { RuntimeName } from "../domain/attribution.js";
import { CriClientEvidence } from "./containerd/client-evidence.js";
import { PodmanClientEvidence } from "./podman/client-evidence.js";
import type { RuntimePort } from "./port.js";

/** One evidence per opened runtime besides Docker; containerd's needs sock_diag to find its process (else its sessions stay unknown, logged). */
export function runtimeClientEvidence(
  ports: readonly RuntimePort[],
  procfs: ProcFs,
  logger?: Logger,
  readCut?: (reason: FdReadCut) => void,
): Map<RuntimeName, ClientEvidence> {
  const found = new Map<RuntimeName, ClientEvidence>();
  for (const port of ports) {
    if (port.runtime === "podman") found.set("podman", new PodmanClientEvidence());
    if (port.runtime === "containerd") {
      const peers = loadUnixPeersReader();
      if (peers.reader === null)
        logger?.warn(
          { reason: peers.reason },
          "unix socket peers unreadable: containerd CRI exec clients stay unknown, only the idle policy applies",
        );
      found.set(
        "containerd",
        new CriClientEvidence({
          procfs,
          socket: port.endpoint,
          peers: peers.reader,
          peersMissingReason: peers.reason ?? undefined,
          ...(readCut ? { readCut } : {}),
        }),
      );
    }
  }
  return found;
}

/**
 * Says once when a runtime's client evidence cannot reach its clients (and when it can again): in the
 * log, where the operator reads why orphanGrace never applies, and as ptyreaper_client_evidence_available.
 */
export class EvidenceReachReporter {
  private readonly known = new Map<RuntimeName, boolean>();

  constructor(private readonly options: { logger: Logger; setAvailable(runtime: RuntimeName, available: boolean): void }) {}

  report(evidences: Iterable<readonly [RuntimeName, ClientEvidence]>): void {
    for (const [runtime, evidence] of evidences) this.reportOne(runtime, evidence.reach());
  }

  private reportOne(runtime: RuntimeName, reach: EvidenceReach | null): void {
    if (reach === null) return;
    const before = this.known.get(runtime);
    if (before === reach.available) return;
    this.known.set(runtime, reach.available);
    this.options.setAvailable(runtime, reach.available);
    if (!reach.available) {
      this.options.logger.warn(
        { runtime, reason: reach.reason },
        `${runtime} exec clients cannot be seen from here: they stay unknown and orphanGrace does not apply to ${runtime} sessions (only the idle policy)`,
      );
    } else if (before === false) {
      this.options.logger.info({ runtime }, `${runtime} exec clients can be seen again: orphanGrace applies`);
    }
  }
}
