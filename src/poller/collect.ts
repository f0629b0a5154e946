// One observation of the host: kernel limits, each runtime's view, the /proc scan, joined into an Inventory.
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { isVanished } from "../errors.js";
import { buildInventory, ttyNrSlaveIndex } from "../domain/inventory.js";
import type { Inventory, ProcInfo, ProcScan } from "../domain/types.js";
import type { ClientEvidence } from "../domain/client.js";
import type { ScanOptions } from "../procfs/scan.js";
import type { ProcFs } from "../procfs/procfs.js";
import type { PollStage } from "./stages.js";
import type { RuntimePort } from "../runtimes/port.js";
import { argvIsParsed, type RuntimeName } from "../domain/attribution.js";
import { gatherRuntime } from "../runtimes/view.js";
import { type RuntimeView } from "../domain/runtime.js";
import { processFactsLookup, readProcessFacts } from "../runtimes/facts.js";
import type { ProcessFacts } from "../domain/attribution.js";
import { claimNamedContainers, mergeRuntimeViews, ptyRuntimeOf, type RuntimeExecVerdict } from "../domain/runtime-sessions.js";
import { markMasterOnly, type MasterOnlyTracker } from "../domain/master-only.js";
import type { InventoryReuse, KeptFacts } from "./reuse.js";
import type { ScanMode } from "../procfs/incremental.js";

export interface CollectDeps {
  procfs: ProcFs;
  /** Runs the /proc scan: in-process for the CLI, in a worker thread for the daemon. */
  scan: (options: ScanOptions & { ptyAllocated: number }) => ProcScan | Promise<ProcScan>;
  /**
   * Every runtime in use, Docker's first when it is (a container or exec two of them list is the first's);
   * empty: only /proc is read.
   */
  runtimes: readonly RuntimePort[];
  /** Where each session's client is, by runtime; a runtime left out keeps its sessions `unknown`. */
  clients?: ReadonlyMap<RuntimeName, ClientEvidence>;
  /** containerd namespaces left out because Docker covers them (`moby` while Docker is enabled). */
  skipNamespaces?: ReadonlySet<string>;
  /** The daemon's: when each pty was first seen held only by masters, and how long it must stay so (masterOnlyGrace). Absent: one look, as `sessions`. */
  masterOnly?: { tracker: MasterOnlyTracker; graceMs: number };
  now?: () => number;
  /**
   * The daemon's: the last cycle's inventory and attribution, taken again when nothing they were built from changed
   * (only tty times, pty.nr and the master-only clock move). Absent: every cycle builds, as `sessions` does once.
   */
  reuse?: InventoryReuse;
}

export interface Observation {
  inventory: Inventory;
  /** Docker Engine API requests this cycle made (none in a steady one: its event cache answers). */
  dockerApiCalls: number;
  scan: ProcScan;
  /** What each runtime in use answered this cycle, in the order of CollectDeps.runtimes. */
  runtimes: RuntimeView[];
  /** Each running tty exec of every runtime, and whether /proc confirmed it. */
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
  const runtimes: RuntimeView[] = [];
  for (const port of deps.runtimes) runtimes.push(await gatherRuntime(port, deps.skipNamespaces));
  let scan: ProcScan;
  try {
    // The exec processes' command lines are shown whole; other holders' only in part (CMDLINE_SHOWN_BYTES).
    scan = await deps.scan({
      initPids: runtimes.flatMap((r) => r.containers.map((c) => c.initPid ?? 0)).filter((pid) => pid > 0),
      wholeArgvPids: runtimes.flatMap((r) => r.execs.map((e) => e.pid)).filter((pid) => pid > 0),
      ptyAllocated: limits.allocated,
    });
  } catch (err) {
    throw new CollectError("scan", { cause: err });
  }
  // The scan's answer arrives in one task; the stages after it each get their own, so a scrape that
  // came meanwhile is answered between them rather than after all of them (a full pass on a busy
  // host makes each one tens of ms). Nothing else runs a cycle meanwhile: the poller's never overlap.
  await yieldToLoop();
  let lookup: ((pid: number) => ProcessFacts | undefined) | null = null;
  const facts = (pid: number): ProcessFacts | undefined => (lookup ??= scanFactsLookup(deps.procfs, scan, deps.reuse?.facts))(pid);
  // A steady cycle whose holders, fds, parents and runtime views are the last cycle's takes the last build with fresh tty times.
  let built = deps.reuse?.take(scan, runtimes, limits) ?? null;
  const inputs = built === null ? deps.reuse?.inputsOf(scan, runtimes) : undefined;
  // containerd containers named by any string (`ctr run … myname`): their processes' cgroups name them exactly.
  claimNamedContainers(scan, runtimes, facts);
  if (built === null) {
    const merged = mergeRuntimeViews(runtimes, scan, facts);
    await yieldToLoop();
    const attributions = deps.reuse?.attributions;
    const inventory = buildInventory(scan, limits, merged.views, {
      exemptByEnv: (pid) => hasExemptEnv(deps.procfs, pid),
      runtimeOf: ptyRuntimeOf(merged.containerRuntimes, facts, attributions),
      ...(deps.reuse ? { previous: deps.reuse.lastPtys } : {}),
    });
    attributions?.endCycle();
    built = { inventory, merged };
    if (inputs) deps.reuse?.keep(inputs, built);
  }
  const { inventory, merged } = built;
  const nowMs = (deps.now ?? Date.now)();
  const firstSeen = deps.masterOnly ? deps.masterOnly.tracker.observe(inventory.ptys, scan, nowMs) : null;
  const unreadableTtys = inventory.ptys.some((p) => p.slavePids.length === 0)
    ? controllingTtysOf(deps.procfs, scan.unreadablePids)
    : new Set<number>();
  markMasterOnly(inventory.ptys, { firstSeen, nowMs, graceMs: deps.masterOnly?.graceMs ?? 0, scan, lookup: facts, unreadableTtys });
  await yieldToLoop();
  // Each runtime's evidence pairs its own sessions' clients (Docker's: the docker CLIs with Docker's execs).
  for (const view of runtimes) {
    const evidence = deps.clients?.get(view.runtime);
    if (!evidence) continue;
    const sessions = inventory.sessions.filter((s) => s.runtime === view.runtime);
    const states = evidence.observe({ scan, view, sessions, nowMs: (deps.now ?? Date.now)() });
    for (const session of sessions) session.client = states.get(session.execId);
  }
  const dockerApiCalls = runtimes.find((r) => r.runtime === "docker")?.apiCalls ?? 0;
  return { inventory, dockerApiCalls, scan, runtimes, runtimeVerdicts: merged.verdicts };
}

/**
 * Runtime attribution's facts of a process. One the scan read in full (a pty holder, an init) is
 * taken from what the pass read of it, in its thread: reading its stat, status, command line and
 * cgroup again cost the daemon's event loop four files per holder, every cycle. Others, and one
 * whose command line the scan cut (facts keep it whole), are read as processFactsLookup does.
 */
function scanFactsLookup(procfs: ProcFs, scan: ProcScan & { mode?: ScanMode }, kept?: KeptFacts): (pid: number) => ProcessFacts | undefined {
  const read = processFactsLookup(procfs);
  const known = new Map<number, ProcessFacts | null>();
  kept?.prune(scan.ppids);
  // One function for every record, not a closure per lookup: a build looks up every holder and its parents.
  const fromScan = (info: ProcInfo): ProcessFacts | null => factsOf(procfs, info);
  return (pid) => {
    const info = scan.processes.get(pid);
    // Only a parsed program's cut argv is read again (whole): for the rest the head the scan kept is enough.
    const fromRecord = info !== undefined && !(info.cmdlineTruncated && argvIsParsed(info.comm, info.cmdline[0]));
    // Kept facts of a record cost two lookups each time: not noted in `known`, which a build would fill with every holder.
    if (fromRecord && kept) return kept.ofRecord(pid, info, fromScan) ?? undefined;
    const cached = known.get(pid);
    if (cached !== undefined || known.has(pid)) return cached ?? undefined;
    let facts: ProcessFacts | null;
    if (fromRecord) facts = factsOf(procfs, info);
    else if (!kept) facts = read(pid) ?? null;
    else {
      const stat = info ?? statOf(procfs, pid);
      // Read in full only when not kept; a process outside the scan is then read with the stat just read.
      const readFull = (): ProcessFacts | null => (info ? (read(pid) ?? null) : readProcessFacts(procfs, pid, stat ?? undefined));
      facts = stat === null ? null : kept.readUnlessKept(pid, `${stat.startTicks} ${stat.ppid} ${stat.comm}`, readFull, scan.mode === "full");
    }
    if (kept) facts = kept.same(pid, facts);
    known.set(pid, facts);
    return facts ?? undefined;
  };
}

/** A process's stat, or null when it exited (or its stat is malformed). */
function statOf(procfs: ProcFs, pid: number): Pick<ProcInfo, "startTicks" | "ppid" | "comm"> | null {
  if (pid <= 0) return null;
  try {
    return procfs.stat(pid);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
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
