// Socket links and the sock_diag answer, parsed; socket inodes read from a fixture fd directory.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FdReadBudget } from "../../../src/procfs/fd-budget.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import {
  formatKernelDev,
  loadUnixPeersReader,
  parseSocketLink,
  listensOn,
  parseUnixStreamPeers,
  serverEndsOf,
  socketInodes,
} from "../../../src/procfs/sockets.js";

describe("parseSocketLink", () => {
  it.each<[string, number | null]>([
    ["socket:[17969]", 17969],
    ["socket:[0]", 0],
    ["socket:[]", null],
    ["pipe:[17966]", null],
    ["/dev/pts/1", null],
    ["anon_inode:[eventpoll]", null],
    ["socket:[17969] (deleted)", null],
    ["/tmp/socket:[1]", null],
  ])("%j → %s", (link, want) => {
    expect(parseSocketLink(link)).toBe(want);
  });
});

describe("formatKernelDev (the kernel's dev_t, as sock_diag reports it)", () => {
  it.each<[number, string]>([
    [(254 << 20) | 0, "254:0"],
    [(8 << 20) | 1, "8:1"],
    [(0 << 20) | 26, "0:26"],
    [((4095 << 20) | 0xfffff) >>> 0, "4095:1048575"],
  ])("%d → %s", (dev, want) => {
    expect(formatKernelDev(dev)).toBe(want);
  });
});

describe("parseUnixStreamPeers", () => {
  it("maps each socket to its peer and, when it has one, its socket file; keeps listeners with a file, skips other rows without a peer", () => {
    const rows = Uint32Array.from([
      17969,
      17970,
      0,
      0, // a CLI's end: no file
      17970,
      17969,
      (254 << 20) | 0,
      16637956, // dockerd's accepted end, on /var/run/docker.sock
      16000,
      0,
      (254 << 20) | 0,
      16637956, // dockerd's listener on it
      500,
      0,
      0,
      0, // no peer and no file: dropped
      7,
      8,
      0,
      42, // a file inode on device 0:0 is still a file
    ]);
    const table = parseUnixStreamPeers(rows);
    expect(table).toEqual(
      new Map([
        [17969, { peer: 17970, file: null }],
        [17970, { peer: 17969, file: { dev: "254:0", ino: 16637956 } }],
        [16000, { peer: 0, file: { dev: "254:0", ino: 16637956 } }],
        [7, { peer: 8, file: { dev: "0:0", ino: 42 } }],
      ]),
    );
    const dockerSock = { dev: "254:0", ino: 16637956 };
    expect(listensOn(table, dockerSock)).toBe(true);
    expect(serverEndsOf(table, dockerSock)).toEqual(new Set([17970, 16000]));
    table.delete(16000);
    // An accepted end alone (it lives in its client's namespace) does not show the server is here.
    expect(listensOn(table, dockerSock)).toBe(false);
    expect(listensOn(table, { dev: "0:0", ino: 42 })).toBe(false);
  });

  it("ignores a trailing partial row", () => {
    expect(parseUnixStreamPeers(Uint32Array.from([1, 2, 0, 0, 3, 4]))).toEqual(new Map([[1, { peer: 2, file: null }]]));
  });
});

describe("socketInodes", () => {
  const root = mkdtempSync(join(tmpdir(), "ptyr-sockets-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "77/fd"), { recursive: true });
  symlinkSync("/dev/pts/1", join(root, "77/fd/0"));
  symlinkSync("socket:[17969]", join(root, "77/fd/3"));
  symlinkSync("pipe:[17966]", join(root, "77/fd/5"));
  symlinkSync("socket:[17972]", join(root, "77/fd/7"));
  writeFileSync(join(root, "stat"), "btime 1700000000\n");
  const procfs = new ProcFs(root, { native: null });

  const budget = (): FdReadBudget => new FdReadBudget(4, 1_000);

  it("lists the inodes of the socket links only", () => {
    const inodes = socketInodes(procfs, 77, budget());
    expect(typeof inodes === "string" ? inodes : inodes.sort((a, b) => a - b)).toEqual([17969, 17972]);
  });

  it("is empty for a process that has exited", () => {
    expect(socketInodes(procfs, 78, budget())).toEqual([]);
  });

  it("reads no link of a process holding more fds than the cap, and says so", () => {
    const cuts: string[] = [];
    expect(socketInodes(procfs, 77, new FdReadBudget(3, 1_000, (cut) => cuts.push(cut)))).toBe("fd_cap");
    expect(cuts).toEqual(["fd_cap"]);
  });
});

describe("loadUnixPeersReader", () => {
  it("says why when the addon is not built", () => {
    const load = loadUnixPeersReader("/nonexistent/sockdiag.node");
    expect(load.reader).toBeNull();
    expect(load.reason).toBe("/nonexistent/sockdiag.node is not built");
  });
});
