// The last cycle's inventory and attribution, given again with fresh tty times when nothing they were built from changed.
import { explainDiscrepancy } from "../domain/inventory.js";
import { AttributionMemo, type MergedView } from "../domain/runtime-sessions.js";
import type { ProcessFacts } from "../domain/attribution.js";
import type { RuntimeView } from "../domain/runtime.js";
import type { ExecSession, Inventory, ProcScan, Pty, PtyLimits } from "../domain/types.js";
import type { ScanMode } from "../procfs/incremental.js";

/** What a cycle builds from the scan and the runtimes' views, before master-only marks and client evidence (those run every cycle). */
export interface BuiltInventory {
  inventory: Inventory;
  merged: MergedView;
}

/**
 * What the build read, as it was: the scan's holders and inits, their fds, the parents above them, and the runtimes'
 * views. Kept until the next build, so in the old generation: the holders' records as one array (in the map's
 * order) and the parents as one typed array (outside V8's heap), not as copies of the thousands-entry maps.
 */
interface BuildInputs {
  /** scan.processes' records, in its order. */
  processes: readonly unknown[];
  ptyFds: ProcScan["ptyFds"];
  initDevpts: ProcScan["initDevpts"];
  unreadablePids: readonly number[];
  bootTimeSec: number;
  /**
   * pid, parent, pid, parent, …: every process on the way up from a holder, an init or an exec's process (what
   * ancestry walks read), each once; the parent NOT_LISTED where a walk stopped at a pid the listing did not have.
   */
  parents: Int32Array;
  views: readonly Pick<RuntimeView, "runtime" | "available" | "containers" | "execs">[];
}

/**
 * Keeps the inventory a cycle built and gives it back to the next cycle when that cycle's scan and views are the same
 * in everything the build reads: the same holders with the same facts, the same pty fds (and counts), the same
 * inits and their devpts, the same unreadable processes, the same parents above each holder, init and exec, and the
 * same containers and execs from every runtime. Only the tty times are then taken from the new scan, and
 * pty.nr's gap is explained again; master-only marks and client evidence are the caller's, every cycle.
 *
 * Never on a full pass or a pass cut by its budget: a full pass rebuilds, so what attribution read outside the scan
 * (an ancestor's command line and cgroup, as a steady pass keeps a holder's) is read again at least every
 * fullScanInterval, as the scan reads a holder's.
 */
export class InventoryReuse {
  private last: { inputs: BuildInputs; built: BuiltInventory } | null = null;
  /** For the cycles that build: processes' facts and /proc attributions kept from the cycles before. */
  readonly facts = new KeptFacts();
  readonly attributions = new AttributionMemo();
  /**
   * The ptys the last cycle gave out (its inventory's array, where the master-only marks replace ptys they change):
   * the next build gives an unchanged one again as the same object.
   */
  lastPtys: readonly Pty[] = [];
  /** Cycles given the last build again, and cycles that built (tests read them). */
  reused = 0;
  built = 0;

  /**
   * The last build with this scan's tty times and these limits, or null when anything it was built from differs
   * (then build, and keep() what was built).
   */
  take(scan: ProcScan & { mode?: ScanMode }, views: readonly RuntimeView[], limits: PtyLimits): BuiltInventory | null {
    const last = this.last;
    if (last === null || scan.mode !== "incremental" || scan.cut || !sameInputs(last.inputs, scan, views)) {
      this.built++;
      return null;
    }
    // Indexed loops here and below: without V8's optimizing compiler each for-of step allocates, and this runs every cycle.
    const ptys: Pty[] = [];
    const lastPtys = last.built.inventory.ptys;
    for (let i = 0; i < lastPtys.length; i++) {
      const pty = lastPtys[i] as Pty;
      const times = scan.ttyTimes.get(pty.key);
      const atimeMs = times?.atimeMs ?? null;
      const mtimeMs = times?.mtimeMs ?? null;
      // Unchanged: the same object (nothing changes a pty once marked, see markMasterOnly). A copy per pty per cycle
      // lived one cycle: long enough to be promoted, and then old-generation garbage.
      ptys.push(pty.atimeMs === atimeMs && pty.mtimeMs === mtimeMs ? pty : { ...pty, atimeMs, mtimeMs });
    }
    const sessions: ExecSession[] = [];
    const lastSessions = last.built.inventory.sessions;
    for (let i = 0; i < lastSessions.length; i++) {
      const session = lastSessions[i] as ExecSession;
      const times = scan.ttyTimes.get(session.ptyKey);
      if (!times) {
        // The build makes no session without times; a slave held with none read is a different scan after all.
        this.built++;
        return null;
      }
      sessions.push({ ...session, atimeMs: times.atimeMs, mtimeMs: times.mtimeMs });
    }
    this.reused++;
    this.lastPtys = ptys;
    const inventory: Inventory = {
      limits,
      ptys,
      sessions,
      discrepancy: explainDiscrepancy(scan, ptys.length, limits.allocated),
      unreadablePids: scan.unreadablePids,
    };
    return { inventory, merged: last.built.merged };
  }

  /**
   * Takes note of what this cycle's build read, before the build changes anything in the scan (claimNamedContainers
   * replaces entries of scan.processes); keep() then stores it with what was built.
   */
  inputsOf(scan: ProcScan, views: readonly RuntimeView[]): BuildInputs {
    return {
      processes: recordsOf(scan.processes),
      ptyFds: scan.ptyFds,
      initDevpts: new Map(scan.initDevpts),
      unreadablePids: [...scan.unreadablePids],
      bootTimeSec: scan.bootTimeSec,
      parents: parentsAbove(scan, views),
      views: views.map(({ runtime, available, containers, execs }) => ({ runtime, available, containers, execs })),
    };
  }

  /** Stores a build and what it read (inputsOf, taken before it), for the next cycle to reuse. */
  keep(inputs: BuildInputs, built: BuiltInventory): void {
    this.last = { inputs, built };
    this.lastPtys = built.inventory.ptys;
  }
}

/** The parent of a pid the listing did not have (parents are pids, never negative). */
const NOT_LISTED = -1;

function recordsOf(processes: ProcScan["processes"]): unknown[] {
  const records = new Array<unknown>(processes.size);
  let at = 0;
  processes.forEach((info) => {
    records[at++] = info;
  });
  return records;
}

/**
 * Every process on the way up from each holder and init, and each exec's process, to the top (each once). The
 * holders are each met once as the map gives them; only the few processes above them that hold nothing need a set
 * to be met once. A set of every holder, and an array grown pair by pair, were most of what a build allocated here.
 */
function parentsAbove(scan: ProcScan, views: readonly RuntimeView[]): Int32Array {
  let pairs = new Int32Array(2 * (scan.processes.size + 64));
  let length = 0;
  const add = (pid: number, parent: number): void => {
    if (length + 2 > pairs.length) {
      const grown = new Int32Array(pairs.length * 2);
      grown.set(pairs);
      pairs = grown;
    }
    pairs[length++] = pid;
    pairs[length++] = parent;
  };
  const above = new Set<number>();
  const climb = (start: number): void => {
    for (let pid = start; !scan.processes.has(pid) && !above.has(pid);) {
      const parent = scan.ppids.get(pid) ?? NOT_LISTED;
      above.add(pid);
      add(pid, parent);
      if (parent === NOT_LISTED) return;
      pid = parent;
    }
  };
  scan.processes.forEach((_, pid) => {
    const parent = scan.ppids.get(pid) ?? NOT_LISTED;
    add(pid, parent);
    if (parent !== NOT_LISTED) climb(parent);
  });
  for (let i = 0; i < scan.ptyFds.length; i++) climb((scan.ptyFds[i] as ProcScan["ptyFds"][number]).pid);
  for (const view of views) {
    for (const exec of view.execs) climb(exec.pid);
    for (const container of view.containers) if (container.initPid !== null) climb(container.initPid);
  }
  return pairs.slice(0, length);
}

function sameInputs(inputs: BuildInputs, scan: ProcScan, views: readonly RuntimeView[]): boolean {
  if (scan.bootTimeSec !== inputs.bootTimeSec) return false;
  if (!sameValue(inputs.unreadablePids, scan.unreadablePids)) return false;
  if (!sameValue(inputs.ptyFds, scan.ptyFds)) return false;
  if (!sameValue(inputs.initDevpts, scan.initDevpts)) return false;
  // The same records in the same order: the scan thread gives an unchanged holder's record again as the same
  // object, so this seldom compares fields. A map reordered with the same records only costs a build.
  if (inputs.processes.length !== scan.processes.size) return false;
  let at = 0;
  let sameProcesses = true;
  scan.processes.forEach((info) => {
    const then = inputs.processes[at++];
    if (sameProcesses && then !== info && !sameValue(then, info)) sameProcesses = false;
  });
  if (!sameProcesses) return false;
  // A walk that stopped at a pid the listing did not have must still stop there.
  const { parents } = inputs;
  for (let i = 0; i < parents.length; i += 2) if ((scan.ppids.get(parents[i] as number) ?? NOT_LISTED) !== parents[i + 1]) return false;
  if (views.length !== inputs.views.length) return false;
  for (let i = 0; i < views.length; i++) {
    const now = views[i] as RuntimeView;
    const then = inputs.views[i] as BuildInputs["views"][number];
    if (now.runtime !== then.runtime || now.available !== then.available) return false;
    if (!sameValue(then.containers, now.containers) || !sameValue(then.execs, now.execs)) return false;
  }
  return true;
}

/**
 * Deep equality of what a scan or a runtime view is made of: primitives, arrays, plain objects and Maps. Objects
 * are equal when they have the same own keys with equal values; an absent key and one set to undefined differ.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    // forEach, not for-of: every cycle compares a few thousand entries, and each for-of step allocates (see take).
    let same = true;
    a.forEach((value, key) => {
      if (same && (!b.has(key) || !sameValue(value, b.get(key)))) same = false;
    });
    return same;
  }
  if (Array.isArray(b) || b instanceof Map) return false;
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  let keys = 0;
  for (const key in left) {
    if (!Object.hasOwn(left, key)) continue;
    keys++;
    if (!Object.hasOwn(right, key) || !sameValue(left[key], right[key])) return false;
  }
  for (const key in right) if (Object.hasOwn(right, key)) keys--;
  return keys === 0;
}

/**
 * Processes' facts (what runtime attribution reads) kept from cycle to cycle, so that a process whose facts did not
 * change is the same object in the next cycle (AttributionMemo goes by that). A process outside the scan (an
 * ancestor of a holder, read from /proc) is read again in full when its stat says it is another process or exec'd
 * (start time, comm or parent moved), and on every full pass; between full passes its command line and cgroup are
 * kept as read, as a steady pass keeps a holder's.
 */
export class KeptFacts {
  private kept = new Map<number, { identity: string | null; facts: ProcessFacts | null }>();

  /** Facts made from a scan's record, by that record: the scan thread gives an unchanged holder's record again as the same object. */
  private readonly byRecord = new WeakMap<object, ProcessFacts | null>();

  /**
   * The facts of a process the scan read in full, made from its record by `make` only when that record is not the
   * one met before (then kept as same() keeps them): a steady cycle's holders cost no copy and no comparison each.
   * `make` takes the record, so that a caller passes one function rather than a closure per call.
   */
  ofRecord<R extends object>(pid: number, record: R, make: (record: R) => ProcessFacts | null): ProcessFacts | null {
    const known = this.byRecord.get(record);
    if (known !== undefined && this.kept.get(pid)?.facts === known) return known;
    const facts = this.same(pid, make(record));
    this.byRecord.set(record, facts);
    return facts;
  }

  /** The kept facts of `pid` when they equal `facts` (the same object as before), else `facts`, kept from now on. */
  same(pid: number, facts: ProcessFacts | null): ProcessFacts | null {
    const kept = this.kept.get(pid);
    if (kept !== undefined && sameValue(kept.facts, facts)) return kept.facts;
    this.kept.set(pid, { identity: null, facts });
    return facts;
  }

  /** The facts read of the process `identity` names, kept from an earlier cycle unless `fresh`; else read() now. */
  readUnlessKept(pid: number, identity: string, read: () => ProcessFacts | null, fresh: boolean): ProcessFacts | null {
    const kept = this.kept.get(pid);
    if (!fresh && kept !== undefined && kept.identity === identity) return kept.facts;
    const facts = read();
    const same = kept !== undefined && sameValue(kept.facts, facts) ? kept.facts : facts;
    this.kept.set(pid, { identity: facts === null ? null : identity, facts: same });
    return same;
  }

  /** Forgets the processes the listing no longer has. */
  prune(listed: ReadonlyMap<number, number>): void {
    for (const pid of this.kept.keys()) if (!listed.has(pid)) this.kept.delete(pid);
  }
}
