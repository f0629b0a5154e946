// Which client evidence each opened runtime gets: containerd's CRI stdout FIFOs, Podman's conmon master fds.
import type { Logger } from "pino";
import type { ClientEvidence } from "../domain/client.js";
import type { ProcFs } from "../procfs/procfs.js";
import { loadUnixPeersReader } from "../procfs/sockets.js";
import type { RuntimeName } from "./attribution.js";
import { CriClientEvidence } from "./containerd/clients.js";
import { PodmanClientEvidence } from "./podman/clients.js";
import type { RuntimePort } from "./port.js";

/** One evidence per opened runtime besides Docker; containerd's needs sock_diag to find its process (else its sessions stay unknown, logged). */
export function runtimeClientEvidence(ports: readonly RuntimePort[], procfs: ProcFs, logger?: Logger): Map<RuntimeName, ClientEvidence> {
  const found = new Map<RuntimeName, ClientEvidence>();
  for (const port of ports) {
    if (port.runtime === "podman") found.set("podman", new PodmanClientEvidence());
    if (port.runtime === "containerd") {
      const peers = loadUnixPeersReader();
      if (peers.reader === null) logger?.warn({ reason: peers.reason }, "unix socket peers unreadable: containerd CRI exec clients stay unknown, only the idle policy applies");
      found.set("containerd", new CriClientEvidence({ procfs, socket: port.endpoint, peers: peers.reader, peersMissingReason: peers.reason ?? undefined }));
    }
  }
  return found;
}
