// containerd CRI's client evidence: containerd holding the exec's stdout FIFO (attached) or not while the shim does (gone),
// over a fixture /proc and a hand-written sock_diag table that says which containerd serves the configured socket.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ExecSession, ProcScan, PtyFd } from "../../../src/domain/types.js";
import { formatDev } from "../../../src/procfs/parse.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import type { UnixPeerTable } from "../../../src/procfs/sockets.js";
import {
  CriClientEvidence,
  DAEMON_MAX_FDS,
  DAEMON_SEARCH_EVERY_MS,
  criStreamSighting,
  isCriStdoutFifo,
  type CriFifoHolders,
} from "../../../src/runtimes/containerd/client-evidence.js";
import { makeSessionFor } from "../metrics/snapshot-factory.js";

const CID = "a".repeat(64);
const EXEC = "5f0e2b7c9d1a3e4f6b8c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a";
const STATE = "/run/containerd";
const FIFO_DIR = `${STATE}/io.containerd.grpc.v1.cri/containers/${CID}/io/2814309712`;
const STDOUT = `${FIFO_DIR}/${EXEC}-stdout`;
const DEV = "0:88";
const DAEMON = 300;
const OTHER_DAEMON = 350;
const SHIM = 400;

const session: ExecSession = {
  ...makeSessionFor("unknown"),
  execId: EXEC,
  containerId: CID,
  ptyKey: `${DEV}:0`,
  devptsDev: DEV,
  index: 0,
  runtime: "containerd",
  runtimeNamespace: "k8s.io",
};
const shimMaster: PtyFd = { pid: SHIM, fd: 12, role: "master", devptsDev: DEV, index: 0 };

describe("isCriStdoutFifo", () => {
  it.each([
    [STDOUT, true],
    [`/var/lib/ptyr/state/io.containerd.grpc.v1.cri/containers/${CID}/io/1/${EXEC}-stdout`, true],
    [`${FIFO_DIR}/${EXEC}-stdin`, false],
    [`${FIFO_DIR}/${EXEC}-stderr`, false],
    [`${FIFO_DIR}/${EXEC}-stdout (deleted)`, false],
    [`${STATE}/io.containerd.grpc.v1.cri/containers/${"b".repeat(64)}/io/2814309712/${EXEC}-stdout`, false],
    [`${STATE}/io.containerd.grpc.v1.cri/containers/${CID}/io/1/2/${EXEC}-stdout`, false],
    [`/run/docker/containerd/${CID}/${EXEC}-stdout`, false],
    ["pipe:[1234]", false],
  ])("%s → %s", (link, expected) => {
    expect(isCriStdoutFifo(link, CID, EXEC)).toBe(expected);
  });
});

describe("criStreamSighting", () => {
  const scan = { ptyFds: [shimMaster] };
  const holders = (daemonLinks: string[] | string, shimLinks: string[] | string): CriFifoHolders => ({
    daemon: typeof daemonLinks === "string" ? daemonLinks : { key: `${DAEMON}@7`, pid: DAEMON, links: daemonLinks },
    shimLinks: () => shimLinks,
  });
  it.each([
    ["containerd holds it: held", holders([STDOUT], [STDOUT]), "held"],
    ["only the shim holds it: released", holders(["pipe:[1]"], [STDOUT]), "released"],
    ["neither holds it (no stdout stream): unknown", holders([], []), "unknown"],
    ["containerd not found: unknown", holders("no containerd process", [STDOUT]), "unknown"],
    ["shim unreadable: unknown", holders([], "cannot read the fds of 400"), "unknown"],
  ] as const)("%s", (_name, h, stream) => {
    expect(criStreamSighting(session, scan, h).stream).toBe(stream);
  });

  it("another namespace's session (ctr, nerdctl hold their own FIFOs): unknown", () => {
    expect(criStreamSighting({ ...session, runtimeNamespace: "default" }, scan, holders([], [STDOUT])).stream).toBe("unknown");
  });

  it("two master holders: unknown, whatever containerd holds", () => {
    expect(criStreamSighting(session, { ptyFds: [shimMaster, { ...shimMaster, pid: 401 }] }, holders([], [STDOUT])).stream).toBe("unknown");
  });
});

describe("CriClientEvidence", () => {
  const root = mkdtempSync(join(tmpdir(), "ptyr-cri-clients-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  // Any file serves as "the socket": only its device and inode are compared.
  const socket = join(root, "containerd.sock");
  writeFileSync(socket, "");
  const socketFile = { dev: formatDev(statSync(socket).dev), ino: statSync(socket).ino % 2 ** 32 };

  function writeProcess(pid: number, comm: string, links: Record<string, string>): void {
    rmSync(join(root, String(pid)), { recursive: true, force: true });
    mkdirSync(join(root, `${pid}/fd`), { recursive: true });
    writeFileSync(join(root, `${pid}/stat`), `${pid} (${comm}) S 1 ${pid} ${pid} 0 -1 4194304 0 0 0 0 1 0 0 0 20 0 7 0 ${pid * 10} 1 1 1\n`);
    for (const [fd, target] of Object.entries(links)) symlinkSync(target, join(root, `${pid}/fd/${fd}`));
  }
  // Two containerds (the configured one, and Docker's own on another socket), and the exec's shim.
  writeProcess(DAEMON, "containerd", { "3": "socket:[21]", "40": STDOUT, "41": `${FIFO_DIR}/${EXEC}-stdin` });
  writeProcess(OTHER_DAEMON, "containerd", { "3": "socket:[31]" });
  writeProcess(SHIM, "containerd-shim", { "9": STDOUT, "12": "/dev/pts/ptmx" });
  const peers: UnixPeerTable = new Map([
    [21, { peer: 22, file: socketFile }],
    [22, { peer: 21, file: null }],
    [31, { peer: 32, file: { dev: "0:1", ino: 99 } }],
    [32, { peer: 31, file: null }],
  ]);
  const scan: ProcScan = {
    processes: new Map(),
    ppids: new Map([
      [DAEMON, 1],
      [OTHER_DAEMON, 1],
      [SHIM, 1],
    ]),
    ptyFds: [shimMaster],
    ttyTimes: new Map(),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 0,
  };
  const observe = (ev: CriClientEvidence, nowMs: number) =>
    ev
      .observe({ scan, view: { runtime: "containerd", available: false, error: null, containers: [], execs: [] }, sessions: [session], nowMs })
      .get(EXEC);

  it("finds the containerd serving the configured socket; attached while it holds the FIFO, gone once only the shim does", () => {
    const ev = new CriClientEvidence({ procfs: new ProcFs(root, { native: null }), socket, peers: { read: () => peers } });
    expect(observe(ev, 1_000)).toEqual({ state: "attached", detail: `containerd pid ${DAEMON} holds the exec's stdout FIFO for its stream` });
    unlinkSync(join(root, `${DAEMON}/fd/40`));
    expect(observe(ev, 3_000)).toMatchObject({ state: "gone", sinceMs: 3_000 });
    expect(observe(ev, 5_000)).toMatchObject({ state: "gone", sinceMs: 3_000 });
    symlinkSync(STDOUT, join(root, `${DAEMON}/fd/40`));
  });

  it("passes over an impostor calling itself containerd with more fds than the cap (one stat, counted) and finds the real one", () => {
    const IMPOSTOR = 360;
    writeProcess(IMPOSTOR, "containerd", { "3": "socket:[21]" });
    const read: number[] = [];
    const cuts: string[] = [];
    class Crowded extends ProcFs {
      override fdCount(pid: number): number | null {
        return pid === IMPOSTOR ? DAEMON_MAX_FDS + 1 : null;
      }
      override fdsUpTo(pid: number, max: number): string[] {
        read.push(pid);
        return super.fdsUpTo(pid, max);
      }
    }
    try {
      const ev = new CriClientEvidence({
        procfs: new Crowded(root, { native: null }),
        socket,
        peers: { read: () => peers },
        readCut: (cut) => cuts.push(cut),
      });
      const crowdedScan = { ...scan, ppids: new Map([[IMPOSTOR, 1], ...scan.ppids]) };
      const state = ev
        .observe({
          scan: crowdedScan,
          view: { runtime: "containerd", available: false, error: null, containers: [], execs: [] },
          sessions: [session],
          nowMs: 1_000,
        })
        .get(EXEC);
      expect(state).toEqual({ state: "attached", detail: `containerd pid ${DAEMON} holds the exec's stdout FIFO for its stream` });
      expect(read).not.toContain(IMPOSTOR);
      expect(cuts).toEqual(["fd_cap"]);
    } finally {
      rmSync(join(root, String(IMPOSTOR)), { recursive: true, force: true });
    }
  });

  it("a spent cycle budget leaves the clients unknown, counted; the search is tried again a search period later", () => {
    let now = 0;
    let msPerLook = 1_000; // every look at the clock finds the budget spent
    const cuts: string[] = [];
    const ev = new CriClientEvidence({
      procfs: new ProcFs(root, { native: null }),
      socket,
      peers: { read: () => peers },
      readCut: (cut) => cuts.push(cut),
      clock: () => (now += msPerLook),
    });
    expect(observe(ev, 1_000)).toMatchObject({ state: "unknown" });
    expect(cuts.length).toBeGreaterThan(0);
    expect(new Set(cuts)).toEqual(new Set(["read_budget"]));
    msPerLook = 0;
    expect(observe(ev, 1_000 + DAEMON_SEARCH_EVERY_MS)?.state).toBe("attached");
  });

  it("without sock_diag every session is unknown, with the reason", () => {
    const ev = new CriClientEvidence({
      procfs: new ProcFs(root, { native: null }),
      socket,
      peers: null,
      peersMissingReason: "sockdiag.node is not built",
    });
    expect(observe(ev, 1_000)).toEqual({ state: "unknown", detail: "unix socket peers unreadable: sockdiag.node is not built" });
  });

  it("no containerd holds a connection on the socket: unknown, and looked for again only after a while", () => {
    let reads = 0;
    const empty = { read: () => (reads++, new Map()) };
    const ev = new CriClientEvidence({ procfs: new ProcFs(root, { native: null }), socket, peers: empty });
    expect(observe(ev, 1_000)?.detail).toBe(
      `sock_diag does not show the server's end of ${socket}: ptyreaper runs in another network namespace than the runtime (run it in the host's: --network host, hostNetwork: true)`,
    );
    observe(ev, 3_000);
    expect(reads).toBe(1);
    observe(ev, 1_000 + DAEMON_SEARCH_EVERY_MS);
    expect(reads).toBe(2);
  });

  it("judges its reach only while containerd answers, once a search period, with or without sessions", () => {
    let table: UnixPeerTable = new Map();
    let reads = 0;
    const ev = new CriClientEvidence({ procfs: new ProcFs(root, { native: null }), socket, peers: { read: () => (reads++, table) } });
    const look = (nowMs: number, runtimeUp: boolean) =>
      ev.observe({ scan, view: { runtime: "containerd", available: runtimeUp, error: null, containers: [], execs: [] }, sessions: [], nowMs });
    look(1_000, false);
    expect([ev.reach(), reads]).toEqual([null, 0]);
    look(2_000, true);
    expect(ev.reach()).toMatchObject({ available: false, reason: expect.stringContaining("another network namespace") as unknown });
    table = peers;
    look(3_000, true);
    expect(ev.reach()).toMatchObject({ available: false }); // not looked at again yet
    look(2_000 + DAEMON_SEARCH_EVERY_MS, true);
    expect(ev.reach()).toEqual({ available: true });
    expect(reads).toBe(2);
  });
});
