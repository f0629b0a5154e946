// One observation of the host: kernel limits, Docker's view, the /proc scan, joined into an Inventory.
import { isVanished } from "../errors.js";
import { buildInventory } from "../domain/inventory.js";
import type { Inventory, ProcScan } from "../domain/types.js";
import type { DockerStatus } from "../domain/snapshot.js";
import type { ClientEvidence } from "../domain/client.js";
import type { DockerCache } from "../docker/cache.js";
import type { ScanOptions } from "../procfs/scan.js";
import type { ProcFs } from "../procfs/procfs.js";
import type { PollStage } from "./stages.js";

export interface CollectDeps {
  procfs: ProcFs;
  /** Runs the /proc scan: in-process for the CLI, in a worker thread for the daemon. */
  scan: (options: ScanOptions & { ptyAllocated: number }) => ProcScan | Promise<ProcScan>;
  /** null when Docker is disabled in the config. */
  docker: DockerCache | null;
  /** Where each session's client is; absent or null: not looked at (sessions are then `unknown`). */
  clients?: ClientEvidence | null;
  now?: () => number;
}

export interface Observation {
  inventory: Inventory;
  docker: DockerStatus;
  dockerApiCalls: number;
  scan: ProcScan;
}

/** The stage that failed, for ptyreaper_poll_errors_total{stage}. */
export class CollectError extends Error {
  constructor(
    readonly stage: Extract<PollStage, "limits" | "scan">,
    options: { cause: unknown },
  ) {
    super(`${stage} failed: ${(options.cause as Error)?.message ?? String(options.cause)}`, options);
  }
}

export async function collect(deps: CollectDeps): Promise<Observation> {
  let limits;
  try {
    limits = deps.procfs.ptyLimits();
  } catch (err) {
    throw new CollectError("limits", { cause: err });
  }
  const refresh = deps.docker ? await deps.docker.refresh() : null;
  const docker: DockerStatus = refresh
    ? { available: refresh.available, error: refresh.error }
    : { available: false, error: "disabled in config (docker.enabled: false)" };
  const view = refresh ?? { available: false, error: docker.error, containers: [], execs: [] };
  let scan: ProcScan;
  try {
    scan = await deps.scan({ initPids: view.containers.map((c) => c.pid), ptyAllocated: limits.allocated });
  } catch (err) {
    throw new CollectError("scan", { cause: err });
  }
  const inventory = buildInventory(scan, limits, view, (pid) => hasExemptEnv(deps.procfs, pid));
  if (deps.clients) {
    const states = deps.clients.observe({ scan, docker: view, sessions: inventory.sessions, nowMs: (deps.now ?? Date.now)() });
    for (const session of inventory.sessions) session.client = states.get(session.execId);
  }
  return { inventory, docker, dockerApiCalls: refresh?.apiCalls ?? 0, scan };
}

/** Only this one variable is looked at; the environment is never stored or shown. */
function hasExemptEnv(procfs: ProcFs, pid: number): boolean {
  try {
    return procfs.environ(pid).includes("PTYREAPER_EXEMPT=1");
  } catch (err) {
    // Exited: nothing to protect. Unreadable: the exemption cannot be ruled out, so honour it.
    return !isVanished(err);
  }
}
