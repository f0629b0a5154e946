// The Docker client reader over a fixture /proc and a hand-written peer table: what it sights, and what it says when it cannot read.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ExecSession, ProcInfo, ProcScan } from "../../../../src/domain/types.js";
import type { RuntimeView } from "../../../../src/domain/runtime.js";
import { formatDev } from "../../../../src/procfs/parse.js";
import { ProcFs } from "../../../../src/procfs/procfs.js";
import type { UnixPeerTable, UnixPeersReader } from "../../../../src/procfs/sockets.js";
import { CLI_MAX_FDS, DockerClientEvidence } from "../../../../src/runtimes/docker/client-evidence.js";
import { PAIRING_DELAY_MS } from "../../../../src/runtimes/docker/clients.js";
import { makeSessionFor } from "../../metrics/snapshot-factory.js";

const BOOT_SEC = 1_700_000_000;
const CLIENT_TICKS = 100_000;
const EXEC_TICKS = CLIENT_TICKS + 30;
const CLIENT_PID = 500;
const AFTER_PAIRING_MS = BOOT_SEC * 1000 + EXEC_TICKS * 10 + PAIRING_DELAY_MS + 1_000;

const root = mkdtempSync(join(tmpdir(), "ptyr-evidence-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// Any file serves as "the engine socket": only its device and inode are compared.
const engineSocket = join(root, "docker.sock");
writeFileSync(engineSocket, "");
const engineFile = { dev: formatDev(statSync(engineSocket).dev), ino: statSync(engineSocket).ino % 2 ** 32 };

function writeClient(pid: number, socketInode: number): void {
  mkdirSync(join(root, `${pid}/fd`), { recursive: true });
  writeFileSync(
    join(root, `${pid}/stat`),
    `${pid} (docker) S 400 ${pid} ${pid} 34817 ${pid} 4194304 0 0 0 0 1 0 0 0 20 0 7 0 ${CLIENT_TICKS} 1 1 1\n`,
  );
  symlinkSync("/dev/pts/1", join(root, `${pid}/fd/0`));
  symlinkSync(`socket:[${socketInode}]`, join(root, `${pid}/fd/3`));
}
writeClient(CLIENT_PID, 11);

const cli: ProcInfo = {
  pid: CLIENT_PID,
  ppid: 400,
  pgrp: CLIENT_PID,
  sid: CLIENT_PID,
  ttyNr: 34817,
  startTicks: CLIENT_TICKS,
  comm: "docker",
  cmdline: ["/usr/bin/docker", "exec", "-it", "web", "sh"],
  uid: 0,
  pidNs: null,
  nsPids: [CLIENT_PID],
  containerId: null,
};

function scanWith(processes: ProcInfo[]): ProcScan {
  return {
    processes: new Map(processes.map((p) => [p.pid, p])),
    ppids: new Map(),
    ptyFds: [],
    ttyTimes: new Map(),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: BOOT_SEC,
  };
}

const session: ExecSession = { ...makeSessionFor("unknown"), execId: "e1", containerName: "web", startTicks: EXEC_TICKS, client: undefined };
const docker: RuntimeView = {
  runtime: "docker",
  available: true,
  error: null,
  containers: [],
  execs: [{ id: "e1", container: { namespace: null, id: session.containerId }, running: true, pid: session.pid, tty: true, command: ["sh"] }],
};

// 11/12: the CLI's connection to the engine; 1: the engine's listener (it shares our network namespace).
const connected: UnixPeerTable = new Map([
  [1, { peer: 0, file: engineFile }],
  [11, { peer: 12, file: null }],
  [12, { peer: 11, file: engineFile }],
]);
const reader = (table: UnixPeerTable | Error): UnixPeersReader => ({
  read: () => {
    if (table instanceof Error) throw table;
    return table;
  },
});

function evidence(peers: UnixPeersReader | null): DockerClientEvidence {
  return new DockerClientEvidence({
    procfs: new ProcFs(root, { native: null }),
    peers,
    peersMissingReason: "sockdiag.node is not built",
    engineSocket,
  });
}

describe("DockerClientEvidence", () => {
  it("leaves the fds of a would-be CLI holding more than any real one unread: its client stays unknown, the cut is counted", () => {
    const reads: number[] = [];
    const cuts: string[] = [];
    class Crowded extends ProcFs {
      override fdCount(pid: number): number | null {
        return pid === CLIENT_PID ? CLI_MAX_FDS + 1 : 3;
      }
      override fds(pid: number): string[] {
        reads.push(pid);
        return super.fds(pid);
      }
    }
    const ev = new DockerClientEvidence({
      procfs: new Crowded(root, { native: null }),
      peers: reader(connected),
      engineSocket,
      readCut: (reason) => cuts.push(reason),
    });
    expect(ev.observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS }).get("e1")?.state).toBe("unknown");
    expect(reads).toEqual([]);
    expect(cuts).toEqual(["fd_cap"]);
  });

  it("reads no more CLIs once the cycle's read budget is spent: their clients stay unknown, the cut is counted", () => {
    const cuts: string[] = [];
    let now = 0;
    const ev = new DockerClientEvidence({
      procfs: new ProcFs(root, { native: null }),
      peers: reader(connected),
      engineSocket,
      readCut: (reason) => cuts.push(reason),
      clock: () => (now += 1_000),
    });
    expect(ev.observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS }).get("e1")?.state).toBe("unknown");
    expect(cuts).toEqual(["read_budget"]);
  });

  it("pairs the CLI connected to the engine's socket file, then sees it gone when its process is", () => {
    const ev = evidence(reader(connected));
    expect(ev.observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS }).get("e1")).toEqual({
      state: "attached",
      detail: `docker CLI pid ${CLIENT_PID}`,
    });
    // Not in the next scan, and re-checked through /proc: still the same process, so still attached.
    expect(ev.observe({ scan: scanWith([]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS + 2_000 }).get("e1")?.state).toBe("attached");
    rmSync(join(root, `${CLIENT_PID}`), { recursive: true });
    try {
      expect(ev.observe({ scan: scanWith([]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS + 4_000 }).get("e1")).toEqual({
        state: "gone",
        sinceMs: AFTER_PAIRING_MS + 4_000,
        detail: `docker CLI pid ${CLIENT_PID} exited`,
      });
    } finally {
      writeClient(CLIENT_PID, 11);
    }
  });

  it("a CLI connected to another socket file is no proven client", () => {
    // 21: the engine's listener, so the engine's namespace is ours.
    const other: UnixPeerTable = new Map([
      [11, { peer: 12, file: null }],
      [12, { peer: 11, file: { dev: engineFile.dev, ino: engineFile.ino + 1 } }],
      [21, { peer: 0, file: engineFile }],
    ]);
    const ev = evidence(reader(other));
    const state = ev.observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS }).get("e1");
    expect(state).toEqual({
      state: "unknown",
      detail: `docker CLI pid ${CLIENT_PID} has no connection to this engine's socket (TCP, ssh, or another network namespace)`,
    });
    expect(ev.reach()).toEqual({ available: true });
  });

  it("no listener of the engine's socket: another network namespace, so no client is judged, and its reach says why", () => {
    // Our own connection's accepted end shows up in our namespace; it proves nothing about the CLIs'.
    const elsewhere: UnixPeerTable = new Map([
      [11, { peer: 12, file: null }],
      [12, { peer: 11, file: engineFile }],
    ]);
    const ev = evidence(reader(elsewhere));
    expect(ev.reach()).toBeNull(); // nothing looked at yet
    const detail = `sock_diag does not show the server's end of ${engineSocket}: ptyreaper runs in another network namespace than the runtime (run it in the host's: --network host, hostNetwork: true)`;
    expect(ev.observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS }).get("e1")).toEqual({
      state: "unknown",
      detail,
    });
    expect(ev.reach()).toEqual({ available: false, reason: detail });
  });

  it.each<[string, UnixPeersReader | null, string]>([
    ["no sock_diag reader", null, "unix socket peers unreadable: sockdiag.node is not built"],
    [
      "sock_diag refused",
      reader(new Error("sock_diag dump of unix sockets failed: Operation not permitted")),
      `cannot tell which clients are connected to ${engineSocket}: sock_diag dump of unix sockets failed: Operation not permitted`,
    ],
  ])("%s: unknown, saying why", (_name, peers, detail) => {
    expect(
      evidence(peers)
        .observe({ scan: scanWith([cli]), view: docker, sessions: [session], nowMs: AFTER_PAIRING_MS })
        .get("e1"),
    ).toEqual({ state: "unknown", detail });
  });

  it("keeps its state and answers nothing while Docker's view is unavailable", () => {
    expect(
      evidence(reader(connected)).observe({
        scan: scanWith([cli]),
        view: { ...docker, available: false },
        sessions: [session],
        nowMs: AFTER_PAIRING_MS,
      }).size,
    ).toBe(0);
  });
});
