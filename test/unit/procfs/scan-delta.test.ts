import { describe, expect, it } from "vitest";
import type { ProcInfo, PtyFd, TtyTimes } from "../../../src/domain/types.js";
import type { ModalScan } from "../../../src/procfs/incremental.js";
import { DeltaReceiver, DeltaSender, type ParentChanges, type ScanDelta } from "../../../src/procfs/scan-delta.js";
import { master, proc, slave } from "../support/scan-fixtures.js";

/** A scan as the scanner gives it: unchanged records are the same objects as in the scan before. */
function scanOf(processes: ProcInfo[], ppids: [number, number][], ptyFds: PtyFd[], times: [string, TtyTimes][]): ModalScan {
  return {
    processes: new Map(processes.map((info) => [info.pid, info])),
    ppids: new Map(ppids),
    ptyFds,
    ttyTimes: new Map(times),
    initDevpts: new Map([[10, "0:40"]]),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 1_700_000_000,
    mode: "incremental",
  };
}

/** A sender given each scan's parent changes as the scanner logs them (here: against the scan sent before). */
class Sender {
  private readonly sender = new DeltaSender();
  private last = new Map<number, number>();

  delta(scan: ModalScan): ScanDelta {
    const changes: ParentChanges = { set: [], gone: [...this.last.keys()].filter((pid) => !scan.ppids.has(pid)) };
    for (const [pid, parent] of scan.ppids) if (this.last.get(pid) !== parent) changes.set.push(pid, parent);
    this.last = new Map(scan.ppids);
    return this.sender.delta(scan, changes);
  }

  forget(): void {
    this.sender.forget();
    this.last = new Map();
  }
}

/** Through the thread boundary as postMessage copies it. */
const cross = (delta: ScanDelta): ScanDelta => structuredClone(delta);

/** A scan's content: the receiver gives each process's pty fds together, in no set order of processes. */
const plain = (scan: ModalScan): unknown => ({
  ...scan,
  ppids: new Map(scan.ppids),
  ptyFds: [...scan.ptyFds].sort((a, b) => a.pid - b.pid || a.fd - b.fd || a.index - b.index),
});

describe("scan deltas between the scan thread and the main thread", () => {
  const shell = proc(20, { ppid: 10 });
  const init = proc(10, { ppid: 5, nsPids: [10, 1] });
  const fds = [master(5, "0:40", 0), slave(20, "0:40", 0)];
  const idle: [string, TtyTimes] = ["0:40:0", { atimeMs: 1000, mtimeMs: 2000 }];
  /** The host's parents: init 10 under 5, the shell 20 under it, and a process 30 that comes and goes. */
  const parents: [number, number][] = [
    [5, 1],
    [10, 5],
    [20, 10],
  ];

  it("gives back each scan whole, and sends only what changed", () => {
    const sender = new Sender();
    const receiver = new DeltaReceiver();
    const first = scanOf([init, shell], [...parents, [30, 1]], fds, [idle]);
    const d1 = sender.delta(first);
    expect(d1.whole).toBe(true);
    expect(plain(receiver.apply(cross(d1)))).toEqual(plain(first));

    // Nothing changed but the pass: nothing crosses but the small rest.
    const second = scanOf([init, shell], [...parents, [30, 1]], fds, [["0:40:0", { atimeMs: 1000, mtimeMs: 2000 }]]);
    const d2 = sender.delta(second);
    expect(d2).toMatchObject({
      whole: false,
      processes: [],
      processesGone: [],
      ppids: [],
      ppidsGone: [],
      ptyFds: null,
      ttyTimes: [],
      ttyTimesGone: [],
    });
    expect(plain(receiver.apply(cross(d2)))).toEqual(plain(second));

    // A process gone, one new, a holder re-read (new record), a tty used, a new pty.
    const reread = { ...shell, comm: "bash" };
    const newFds = [...fds, master(5, "0:40", 1), slave(40, "0:40", 1)];
    const third = scanOf([init, reread, proc(40, { ppid: 5 })], [...parents, [40, 5]], newFds, [
      ["0:40:0", { atimeMs: 3000, mtimeMs: 2000 }],
      ["0:40:1", { atimeMs: 1, mtimeMs: 1 }],
    ]);
    const d3 = sender.delta(third);
    expect(d3.processes.map((info) => info.pid)).toEqual([20, 40]);
    expect(d3.ppids).toEqual([40, 5]);
    expect(d3.ppidsGone).toEqual([30]);
    // Only the fds of the processes whose fds changed: the master holder's (all of them) and the new slave's.
    expect(d3.ptyFds?.set.map((fd) => [fd.pid, fd.index])).toEqual([
      [5, 0],
      [5, 1],
      [40, 1],
    ]);
    expect(d3.ptyFds?.gone).toEqual([]);
    expect(d3.ttyTimes.map(([key]) => key)).toEqual(["0:40:0", "0:40:1"]);
    expect(plain(receiver.apply(cross(d3)))).toEqual(plain(third));

    // Gone again: the processes, parents and times the scan no longer has.
    const fourth = scanOf(
      [init],
      [
        [5, 1],
        [10, 5],
      ],
      [fds[0] as PtyFd],
      [],
    );
    const d4 = sender.delta(fourth);
    expect(d4.processesGone.sort()).toEqual([20, 40]);
    expect(d4.ptyFds?.gone.sort()).toEqual([20, 40]);
    expect(d4.ttyTimesGone.sort()).toEqual(["0:40:0", "0:40:1"]);
    expect(plain(receiver.apply(cross(d4)))).toEqual(plain(fourth));
  });

  it("gives its own maps, which the next delta updates in place (the caller copies what must outlive a cycle)", () => {
    const sender = new Sender();
    const receiver = new DeltaReceiver();
    const given = receiver.apply(cross(sender.delta(scanOf([init, shell], parents, fds, [idle]))));
    const kept = { processes: new Map(given.processes), ttyTimes: new Map(given.ttyTimes) };
    const next = receiver.apply(cross(sender.delta(scanOf([init], parents, fds, []))));
    expect(next.processes).toBe(given.processes);
    expect(next.ttyTimes).toBe(given.ttyTimes);
    expect([...given.processes.keys()]).toEqual([10]);
    expect(kept.processes.get(20)).toEqual(shell);
    expect(kept.ttyTimes.get("0:40:0")).toEqual(idle[1]);
  });

  it("keeps a process's unchanged pty fds as the same objects when another's change", () => {
    const sender = new Sender();
    const receiver = new DeltaReceiver();
    const before = receiver.apply(cross(sender.delta(scanOf([init, shell], parents, fds, [idle]))));
    const kept = before.ptyFds.find((fd) => fd.pid === 20);
    const after = receiver.apply(cross(sender.delta(scanOf([init, shell], parents, [fds[1] as PtyFd, master(5, "0:40", 1)], [idle]))));
    expect(after.ptyFds.find((fd) => fd.pid === 20)).toBe(kept);
    expect(after.ptyFds.filter((fd) => fd.pid === 5).map((fd) => fd.index)).toEqual([1]);
    expect(after.ptyFds).toHaveLength(2);
  });

  it("sends the whole scan after forget(), and refuses a delta with nothing to apply it to", () => {
    const sender = new Sender();
    const scan = scanOf([init, shell], [[10, 5]], fds, [idle]);
    sender.delta(scan);
    const partial = sender.delta(scanOf([init, shell], [[10, 5]], fds, [idle]));
    expect(partial.whole).toBe(false);
    expect(() => new DeltaReceiver().apply(cross(partial))).toThrow(/before any whole scan/);
    sender.forget();
    const whole = sender.delta(scan);
    expect(whole.whole).toBe(true);
    const receiver = new DeltaReceiver();
    expect(plain(receiver.apply(cross(whole)))).toEqual(plain(scan));
  });
});
