// Pure: every runtime's exec sessions confirmed from /proc (Docker's too), in the shape the inventory takes.
// The inventory's identity rules (one session per exec, its own pty, in-container holders) then apply to them unchanged.
import {
  attribute,
  parseCgroupIdentity,
  parseCgroupPath,
  type Attribution,
  type NamedContainers,
  type ProcessFacts,
  type RuntimeName,
} from "./attribution.js";
import { isSessionCandidate, type RuntimeExec, type RuntimeView } from "./runtime.js";
import { ptyKey, type ProcScan, type Pty } from "./types.js";
import { inventoryContainers, ownPtyKeys, ttyNrSlaveIndex } from "./inventory.js";

export interface RuntimeExecVerdict {
  exec: RuntimeExec;
  runtime: RuntimeName;
  /** null when /proc agrees with the runtime's record; else why it does not (the exec is then no session). */
  refusal: string | null;
}

export interface MergedView {
  /** Each runtime's view with, of its session candidates, only those /proc confirmed: what buildInventory takes. */
  views: RuntimeView[];
  /** Container ID → the runtime that runs it (the first to list it). */
  containerRuntimes: Map<string, RuntimeName>;
  verdicts: RuntimeExecVerdict[];
}

/**
 * Whether /proc says the same as the runtime about one running exec: its process holds a pty slave on
 * its stdio, the holder of that pty's master is this runtime's monitor, and the attribution names the
 * same runtime, container, exec role and session process (and exec ID where the monitor names one).
 */
export function confirmRuntimeExec(
  exec: RuntimeExec,
  runtime: RuntimeName,
  scan: ProcScan,
  lookup: (pid: number) => ProcessFacts | undefined,
  knownInits: ReadonlySet<number>,
  named?: NamedContainers,
): string | null {
  const holder = lookup(exec.pid);
  if (!holder) return `process ${exec.pid} not readable`;
  // Its own pty by the same rule as Docker's execs: the controlling tty's, stdio only without one.
  const slaves = scan.ptyFds
    .filter((fd) => fd.pid === exec.pid && fd.role === "slave")
    .map((fd) => ({ fd: fd.fd, key: ptyKey(fd.devptsDev, fd.index), index: fd.index }));
  const keys = ownPtyKeys(slaves, ttyNrSlaveIndex(scan.processes.get(exec.pid)?.ttyNr ?? 0));
  if (keys.size !== 1) return `process ${exec.pid} holds ${keys.size} ptys it could own (its controlling tty's, else on its stdio)`;
  const key = [...keys][0] as string;
  const masterPids = new Set(scan.ptyFds.filter((fd) => fd.role === "master" && ptyKey(fd.devptsDev, fd.index) === key).map((fd) => fd.pid));
  if (masterPids.size > 1) return `its pty's master is held by ${masterPids.size} processes`;
  const masterPid = [...masterPids][0];
  const master = masterPid === undefined ? null : (lookup(masterPid) ?? null);
  const found = attribute(holder, master, lookup, knownInits, named);
  const why = found.evidence.join("; ");
  if (found.runtime !== runtime) return `/proc attributes it to ${found.runtime} (${why})`;
  if (found.role !== "exec") return `/proc says it is the container's ${found.role} process (${why})`;
  if (found.sessionPid !== exec.pid) return `/proc names pid ${found.sessionPid ?? "none"} as the session's process`;
  if (found.containerId !== exec.container.id) return `/proc names container ${found.containerId ?? "none"}`;
  if (found.execId !== null && found.execId !== exec.id) return `its monitor names exec ${found.execId}`;
  return null;
}

/**
 * Every runtime's view with only the session candidates (running tty execs) /proc confirms: each one's process is
 * a child of its runtime's monitor that holds its pty's master, not a container's init. An exec that is no
 * candidate is kept as it is (a running one says which container its processes are in); one /proc does not
 * confirm adds nothing, so its pty is counted but unowned. An exec two runtimes list is the first's (Docker's
 * view comes first). A runtime that did not answer adds nothing.
 */
export function mergeRuntimeViews(views: readonly RuntimeView[], scan: ProcScan, lookup: (pid: number) => ProcessFacts | undefined): MergedView {
  const verdicts: RuntimeExecVerdict[] = [];
  const knownInits = new Set<number>();
  for (const view of views) for (const c of view.containers) if (c.initPid !== null && c.initPid > 0) knownInits.add(c.initPid);
  const named = namedContainersOf(views);
  const seenExecs = new Set<string>();
  const confirmed = views.map((view): RuntimeView => {
    if (!view.available) return { ...view, containers: [], execs: [] };
    const listed = new Set(view.containers.map((c) => c.id));
    const execs = view.execs.filter((exec) => {
      if (!isSessionCandidate(exec)) return true;
      if (!listed.has(exec.container.id) || seenExecs.has(exec.id)) return false; // never two sessions for one exec
      const refusal = confirmRuntimeExec(exec, view.runtime, scan, lookup, knownInits, named);
      verdicts.push({ exec, runtime: view.runtime, refusal });
      if (refusal === null) seenExecs.add(exec.id);
      return refusal === null;
    });
    return { ...view, execs };
  });
  const containerRuntimes = new Map([...inventoryContainers(confirmed)].map(([id, { runtime }]) => [id, runtime]));
  return { views: confirmed, containerRuntimes, verdicts };
}

/**
 * containerd's listed containers, by namespace, whose `/<namespace>/<id>` cgroup path no pattern reads: ids
 * that are not 64-hex (`ctr run … myname`), or namespaces other than `k8s.io` (nerdctl's `default`).
 */
export function namedContainersOf(runtimes: readonly RuntimeView[]): Map<string, Set<string>> {
  const named = new Map<string, Set<string>>();
  for (const view of runtimes) {
    if (!view.available || view.runtime !== "containerd") continue;
    for (const { namespace, id } of view.containers) {
      if (namespace === null || parseCgroupPath(`/${namespace}/${id}`) !== null) continue;
      const ids = named.get(namespace) ?? new Set<string>();
      ids.add(id);
      named.set(namespace, ids);
    }
  }
  return named;
}

/**
 * Names the container of the processes the inventory goes by (pty holders and the runtimes' exec processes)
 * where no cgroup pattern did and their cgroup path is exactly one of `named` (namedCgroupContainer). Their
 * cgroups are read (through `lookup`) only when there is such a container. Replaces `scan.processes` with a copy
 * whose entries for those processes are copies.
 */
export function claimNamedContainers(scan: ProcScan, runtimes: readonly RuntimeView[], lookup: (pid: number) => ProcessFacts | undefined): void {
  const named = namedContainersOf(runtimes);
  if (named.size === 0) return;
  const pids = new Set(scan.ptyFds.map((fd) => fd.pid));
  for (const view of runtimes) for (const exec of view.execs) if (exec.pid > 0) pids.add(exec.pid);
  let copied = false;
  for (const pid of pids) {
    const info = scan.processes.get(pid);
    if (!info || info.containerId !== null) continue;
    const cgroup = lookup(pid)?.cgroup ?? "";
    // Only what the list names: a path of a known form is the patterns' to read, not this.
    if (parseCgroupIdentity(cgroup) !== null) continue;
    const identity = parseCgroupIdentity(cgroup, named);
    if (identity === null) continue;
    // A copy of the map, once: the scan's maps may be its source's own (DeltaReceiver), which this must not change.
    if (!copied) {
      scan.processes = new Map(scan.processes);
      copied = true;
    }
    scan.processes.set(pid, { ...info, containerId: identity.containerId });
  }
}

/**
 * The runtime a pty is shown under: its container's runtime (the first to list it) when one is known; for a pty no
 * runtime's container claims (CRI-O has no adapter; a runtime may be down), the runtime /proc alone attributes to
 * the slave holder that leads it. Only shown: no session comes of the second. Without `lookup`, only the first.
 * `memo`: the daemon's, kept from cycle to cycle (see AttributionMemo); call its endCycle() once every pty is tagged.
 */
export function ptyRuntimeOf(
  containerRuntimes: ReadonlyMap<string, RuntimeName>,
  lookup?: (pid: number) => ProcessFacts | undefined,
  memo?: AttributionMemo,
): (pty: Pty) => RuntimeName | null {
  return (pty) => {
    const byContainer = pty.containerId === null ? null : (containerRuntimes.get(pty.containerId) ?? null);
    if (byContainer !== null || pty.owner === "exec" || lookup === undefined) return byContainer;
    const holder = lookup(pty.leaderPid ?? pty.slavePids[0] ?? 0);
    if (!holder) return null;
    const masterPid = pty.masterPids[0];
    const master = pty.masterPids.length === 1 && masterPid !== undefined ? (lookup(masterPid) ?? null) : null;
    const found = memo ? memo.attribute(holder, master, lookup) : attribute(holder, master, lookup);
    return found.runtime !== "unknown" ? found.runtime : null;
  };
}

/** One attribution as made, with every process it looked up (pids[i]) and what the lookup gave (facts[i]). */
interface KeptAttribution {
  master: ProcessFacts | null;
  pids: number[];
  facts: (ProcessFacts | undefined)[];
  found: Attribution;
}

/**
 * attribute() (without runtime records) kept from one cycle to the next: given again while the holder, the master
 * and every process it looked up are the same facts objects as then. It relies on a lookup that gives the same
 * object for a process whose facts did not change (the daemon's keeps them across cycles), and a new one
 * otherwise; with any other lookup it attributes anew. What a cycle did not ask for is forgotten at its end.
 *
 * Indexed loops over arrays: the daemon runs without V8's optimizing compiler, where each step of a for-of over a
 * Map allocates, and every building cycle asks this once per pty.
 */
export class AttributionMemo {
  // One holder's attributions: nearly always one, kept as itself (an array per holder per cycle was garbage the old generation took).
  private kept = new Map<ProcessFacts, KeptAttribution | KeptAttribution[]>();
  private next = new Map<ProcessFacts, KeptAttribution | KeptAttribution[]>();

  attribute(holder: ProcessFacts, master: ProcessFacts | null, lookup: (pid: number) => ProcessFacts | undefined): Attribution {
    const again = sameAttribution(this.next.get(holder), master, lookup);
    if (again) return again.found;
    const kept = sameAttribution(this.kept.get(holder), master, lookup);
    if (kept) {
      this.remember(holder, kept);
      return kept.found;
    }
    const pids: number[] = [];
    const facts: (ProcessFacts | undefined)[] = [];
    const found = attribute(holder, master, (pid) => {
      const read = lookup(pid);
      // The walk asks for a parent twice in a row (its test, then its step); one entry checks both.
      if (pids.at(-1) !== pid || facts.at(-1) !== read) {
        pids.push(pid);
        facts.push(read);
      }
      return read;
    });
    this.remember(holder, { master, pids, facts, found });
    return found;
  }

  /** Ends a cycle: attributions it did not use are dropped. */
  endCycle(): void {
    this.kept = this.next;
    this.next = new Map();
  }

  private remember(holder: ProcessFacts, kept: KeptAttribution): void {
    const list = this.next.get(holder);
    if (list === undefined) this.next.set(holder, kept);
    else if (Array.isArray(list)) list.push(kept);
    else this.next.set(holder, [list, kept]);
  }
}

/** The kept attribution, of `list`, made with this master from processes that `lookup` still gives as the same facts. */
function sameAttribution(
  list: KeptAttribution | readonly KeptAttribution[] | undefined,
  master: ProcessFacts | null,
  lookup: (pid: number) => ProcessFacts | undefined,
): KeptAttribution | undefined {
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) return stillSame(list as KeptAttribution, master, lookup) ? (list as KeptAttribution) : undefined;
  for (let k = 0; k < list.length; k++) {
    const kept = list[k] as KeptAttribution;
    if (stillSame(kept, master, lookup)) return kept;
  }
  return undefined;
}

function stillSame(kept: KeptAttribution, master: ProcessFacts | null, lookup: (pid: number) => ProcessFacts | undefined): boolean {
  if (kept.master !== master) return false;
  for (let i = 0; i < kept.pids.length; i++) if (lookup(kept.pids[i] as number) !== kept.facts[i]) return false;
  return true;
}
