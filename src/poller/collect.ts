// One observation of the host: kernel limits, Docker's view, the /proc scan, joined into an Inventory.
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { isVanished } from "../errors.js";
import { buildInventory, ttyNrSlaveIndex } from "../domain/inventory.js";
import type { Inventory, ProcInfo, ProcScan } from "../domain/types.js";
import type { DockerStatus } from "../domain/snapshot.js";
import type { ClientEvidence } from "../domain/client.js";
import type { DockerRuntime } from "../runtimes/docker/docker.js";
import type { ScanOptions } from "../procfs/scan.js";
import type { ProcFs } from "../procfs/procfs.js";
import type { PollStage } from "./stages.js";
import type { RuntimePort } from "../runtimes/port.js";
import { argvIsParsed, type RuntimeName } from "../domain/attribution.js";
import { gatherRuntime } from "../runtimes/view.js";
import { type RuntimeView } from "../domain/runtime.js";
import { processFactsLookup } from "../runtimes/facts.js";
import type { ProcessFacts } from "../domain/attribution.js";
import { claimNamedContainers, mergeRuntimeViews, tagPtys, tagPtysFromProc, type RuntimeExecVerdict } from "../domain/runtime-sessions.js";
import { markMasterOnly, type MasterOnlyTracker } from "../domain/master-only.js";

export interface CollectDeps {
  procfs: ProcFs;
  /** Runs the /proc scan: in-process for the CLI, in a worker thread for the daemon. */
  scan: (options: ScanOptions & { ptyAllocated: number }) => ProcScan | Promise<ProcScan>;
  /** null when Docker is disabled in the config. */
  docker: DockerRuntime | null;
  /** Where each session's client is; absent or null: not looked at (sessions are then `unknown`). */
  clients?: ClientEvidence | null;
  /** Client evidence of other runtimes' sessions, by runtime; a runtime left out keeps its sessions `unknown`. */
  runtimeClients?: ReadonlyMap<RuntimeName, ClientEvidence>;
  /** Runtimes besides Docker (containerd, Podman) opened from the config; absent or empty: Docker only. */
  runtimes?: readonly RuntimePort[];
  /** containerd namespaces left out because Docker covers them (`moby` while Docker is enabled). */
  skipNamespaces?: ReadonlySet<string>;
  /** The daemon's: when each pty was first seen held only by masters, and how long it must stay so (masterOnlyGrace). Absent: one look, as `sessions`. */
  masterOnly?: { tracker: MasterOnlyTracker; graceMs: number };
  now?: () => number;
}

export interface Observation {
  inventory: Inventory;
  docker: DockerStatus;
  dockerApiCalls: number;
  scan: ProcScan;
  /** What each other runtime answered this cycle. */
  runtimes?: RuntimeView[];
  /** Each running tty exec (Docker's too), and whether /proc confirmed it. */
  runtimeVerdicts?: RuntimeExecVerdict[];
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
  const runtimes: RuntimeView[] = [];
  for (const port of deps.runtimes ?? []) runtimes.push(await gatherRuntime(port, deps.skipNamespaces));
  const runtimeInits = runtimes.flatMap((r) => r.containers.map((c) => c.initPid ?? 0)).filter((pid) => pid > 0);
  let scan: ProcScan;
  try {
    // The exec processes' command lines are shown whole; other holders' only in part (CMDLINE_SHOWN_BYTES).
    const execPids = [...view.execs.map((e) => e.pid), ...runtimes.flatMap((r) => r.execs.map((e) => e.pid))].filter((pid) => pid > 0);
    scan = await deps.scan({
      initPids: [...view.containers.map((c) => c.pid), ...runtimeInits],
      wholeArgvPids: execPids,
      ptyAllocated: limits.allocated,
    });
  } catch (err) {
    throw new CollectError("scan", { cause: err });
  }
  // The scan's answer arrives in one task; the stages after it each get their own, so a scrape that
  // came meanwhile is answered between them rather than after all of them (a full pass on a busy
  // host makes each one tens of ms). Nothing else runs a cycle meanwhile: the poller's never overlap.
  await yieldToLoop();
  const lookup = scanFactsLookup(deps.procfs, scan);
  // containerd containers named by any string (`ctr run … myname`): their processes' cgroups name them exactly.
  claimNamedContainers(scan, runtimes, lookup);
  const merged = mergeRuntimeViews(view, runtimes, scan, lookup);
  const inventory = buildInventory(scan, limits, merged.view, (pid) => hasExemptEnv(deps.procfs, pid));
  tagPtys(inventory.ptys, merged.containerRuntimes);
  await yieldToLoop();
  tagPtysFromProc(inventory.ptys, lookup);
  const nowMs = (deps.now ?? Date.now)();
  const firstSeen = deps.masterOnly ? deps.masterOnly.tracker.observe(inventory.ptys, scan, nowMs) : null;
  const unreadableTtys = inventory.ptys.some((p) => p.slavePids.length === 0)
    ? controllingTtysOf(deps.procfs, scan.unreadablePids)
    : new Set<number>();
  markMasterOnly(inventory.ptys, { firstSeen, nowMs, graceMs: deps.masterOnly?.graceMs ?? 0, scan, lookup, unreadableTtys });
  await yieldToLoop();
  if (deps.clients) {
    // Docker's evidence pairs Docker's exec clients; other runtimes' have their own (runtimeClients).
    const dockerSessions = inventory.sessions.filter((s) => s.runtime === "docker");
    const states = deps.clients.observe({ scan, docker: view, sessions: dockerSessions, nowMs: (deps.now ?? Date.now)(), runtimeUp: view.available });
    for (const session of dockerSessions) session.client = states.get(session.execId);
  }
  for (const [runtime, evidence] of deps.runtimeClients ?? []) {
    if (runtime === "docker") continue;
    const sessions = inventory.sessions.filter((s) => s.runtime === runtime);
    const runtimeUp = runtimes.find((r) => r.runtime === runtime)?.available ?? false;
    const states = evidence.observe({ scan, docker: view, sessions, nowMs: (deps.now ?? Date.now)(), runtimeUp });
    for (const session of sessions) session.client = states.get(session.execId);
  }
  return { inventory, docker, dockerApiCalls: refresh?.apiCalls ?? 0, scan, runtimes, runtimeVerdicts: merged.verdicts };
}

/**
 * Runtime attribution's facts of a process. One the scan read in full (a pty holder, an init) is
 * taken from what the pass read of it, in its thread: reading its stat, status, command line and
 * cgroup again cost the daemon's event loop four files per holder, every cycle. Others, and one
 * whose command line the scan cut (facts keep it whole), are read as processFactsLookup does.
 */
function scanFactsLookup(procfs: ProcFs, scan: ProcScan): (pid: number) => ProcessFacts | undefined {
  const read = processFactsLookup(procfs);
  const known = new Map<number, ProcessFacts | null>();
  return (pid) => {
    const info = scan.processes.get(pid);
    // Only a parsed program's cut argv is read again (whole): for the rest the head the scan kept is enough.
    if (!info || (info.cmdlineTruncated && argvIsParsed(info.comm, info.cmdline[0]))) return read(pid);
    if (!known.has(pid)) known.set(pid, factsOf(procfs, info));
    return known.get(pid) ?? undefined;
  };
}

/** null when the process exited since the scan. */
function factsOf(procfs: ProcFs, info: ProcInfo): ProcessFacts | null {
  try {
    return {
      pid: info.pid,
      ppid: info.ppid,
      comm: info.comm,
      argv: info.cmdline,
      cgroup: info.cgroup ?? procfs.cgroupText(info.pid),
      nsPid: info.nsPids.at(-1) ?? null,
    };
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
}

/**
 * The pty slave indexes that processes whose fds could not be read have as controlling tty: one of them may
 * hold that slave. Their stat is world-readable where their fds are not; null when one's is not either.
 */
function controllingTtysOf(procfs: ProcFs, pids: readonly number[]): Set<number> | null {
  const indexes = new Set<number>();
  for (const pid of pids) {
    try {
      const stat = procfs.stat(pid);
      if (stat === null) return null;
      const index = ttyNrSlaveIndex(stat.ttyNr);
      if (index !== null) indexes.add(index);
    } catch (err) {
      if (!isVanished(err)) return null;
    }
  }
  return indexes;
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
