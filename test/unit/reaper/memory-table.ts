// /proc as a map for reaper tests: processes appear, vanish and get reused as a test says.
import type { ProcessTable, SlaveActivity } from "../../../src/reaper/identity.js";
import type { StatFields } from "../../../src/procfs/parse.js";
import type { FdReadBudget, FdReadCut } from "../../../src/procfs/fd-budget.js";

export interface FakeProc {
  ppid: number;
  startTicks: number;
  cgroup: string;
  nsPids: number[];
  comm?: string;
  state?: string;
  /** pty slaves held: [devptsDev, index, the allocation's ctime (ns; 1 when left out)] */
  slaves?: [string, number, bigint?][];
  /** Set: its slaves are held past its standard streams and its fds are more than the cap (the read is cut). */
  manyFds?: boolean;
  /** The slaves' times read at reap time (ms; 0 and 0 when left out: no activity since any snapshot). */
  activity?: SlaveActivity;
}

export class MemoryTable implements ProcessTable {
  readonly procs = new Map<number, FakeProc>();
  private get(pid: number): FakeProc {
    const p = this.procs.get(pid);
    if (!p) throw Object.assign(new Error(`ENOENT ${pid}`), { code: "ENOENT" });
    return p;
  }
  pids(): number[] {
    return [...this.procs.keys()];
  }
  stat(pid: number): StatFields {
    const p = this.get(pid);
    return { pid, comm: p.comm ?? "sh", state: p.state ?? "S", ppid: p.ppid, pgrp: pid, sid: pid, ttyNr: 0, startTicks: p.startTicks };
  }
  nsPids(pid: number): number[] {
    return this.get(pid).nsPids;
  }
  cgroup(pid: number): string {
    return this.get(pid).cgroup;
  }
  /** A cgroup's listing, as cgroup.procs gives it; null (not readable from here) when `noCgroupListing` is set. */
  noCgroupListing = false;
  cgroupMembers(cgroup: string): number[] | null {
    if (this.noCgroupListing) return null;
    return [...this.procs].filter(([, p]) => p.cgroup === cgroup).map(([pid]) => pid);
  }
  slaveCtimeNs(pid: number, dev: string, index: number, budget: FdReadBudget): bigint | null | FdReadCut {
    if (this.get(pid).manyFds) return budget.cut("fd_cap");
    const slave = (this.get(pid).slaves ?? []).find(([d, i]) => d === dev && i === index);
    return slave ? (slave[2] ?? 1n) : null;
  }
  slaveActivity(pid: number, dev: string, index: number, budget: FdReadBudget): SlaveActivity | null | FdReadCut {
    const held = this.slaveCtimeNs(pid, dev, index, budget);
    return held === null || typeof held === "string" ? held : (this.get(pid).activity ?? { atimeMs: 0, mtimeMs: 0 });
  }
}
