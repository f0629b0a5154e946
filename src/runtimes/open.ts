// Which runtime adapters to open, from the `runtimes:` config and which sockets exist; containerd's is loaded only when used.
import type { DockerConfig, RuntimeEnabled, RuntimesConfig } from "../config/types.js";
import type { RuntimePort } from "./port.js";

export interface RuntimeChoice {
  runtime: "containerd" | "podman";
  socket: string;
  /** `enabled: true`: its absence or failure is an error, not a quiet skip. */
  required: boolean;
}

export interface RuntimeChoices {
  chosen: RuntimeChoice[];
  /** One line per runtime that is required but has no socket. */
  problems: string[];
  /** One line per runtime left out, for the start-up log. */
  skipped: string[];
}

/** Pure: `enabled: auto` opens a runtime whose socket exists, `true` opens it or reports it missing, `false` never. */
export function chooseRuntimes(config: RuntimesConfig, socketExists: (path: string) => boolean): RuntimeChoices {
  const result: RuntimeChoices = { chosen: [], problems: [], skipped: [] };
  const consider = (runtime: RuntimeChoice["runtime"], enabled: RuntimeEnabled, socket: string): void => {
    if (enabled === false) {
      result.skipped.push(`${runtime}: disabled in the config`);
    } else if (socketExists(socket)) {
      result.chosen.push({ runtime, socket, required: enabled === true });
    } else if (enabled === true) {
      result.problems.push(`runtimes.${runtime}: enabled, but there is no socket at ${socket}`);
    } else {
      result.skipped.push(`${runtime}: no socket at ${socket}`);
    }
  };
  consider("containerd", config.containerd.enabled, config.containerd.socket);
  consider("podman", config.podman.enabled, config.podman.socket);
  return result;
}

/**
 * Pure: whether Docker is read. `auto` reads it when its socket exists at start; `true` always (a missing
 * socket is an engine that is down: `ptyreaper_docker_up` 0, retried each cycle, as before `auto`); `false` never.
 * `skipped` says why it is not, for the start-up log.
 */
export function chooseDocker(
  docker: Pick<DockerConfig, "enabled" | "socket">,
  socketExists: (path: string) => boolean,
): { used: boolean; skipped: string | null } {
  if (docker.enabled === false) return { used: false, skipped: "docker: disabled in the config" };
  if (docker.enabled === "auto" && !socketExists(docker.socket)) return { used: false, skipped: `docker: no socket at ${docker.socket}` };
  return { used: true, skipped: null };
}

/**
 * Creates the chosen adapters (no connection is made until their first call). containerd's adapter
 * pulls in gRPC (about 16 MiB of resident memory), so it is imported only when chosen.
 */
export async function openRuntimes(config: RuntimesConfig, chosen: readonly RuntimeChoice[]): Promise<RuntimePort[]> {
  const ports: RuntimePort[] = [];
  for (const choice of chosen) {
    if (choice.runtime === "containerd") {
      const { ContainerdRuntime } = await import("./containerd/containerd.js");
      ports.push(
        new ContainerdRuntime({ socket: choice.socket, namespaces: config.containerd.namespaces, callTimeoutMs: config.containerd.timeout }),
      );
    } else {
      const { PodmanRuntime } = await import("./podman/podman.js");
      ports.push(new PodmanRuntime({ socket: choice.socket, callTimeoutMs: config.podman.timeout }));
    }
  }
  return ports;
}
