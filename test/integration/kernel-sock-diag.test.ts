// The sock_diag reader (native/sockdiag.c) on the real kernel: which process is connected to which unix socket file.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FdReadBudget } from "../../src/procfs/fd-budget.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { loadUnixPeersReader, socketFileId, socketInodes, type UnixPeersReader } from "../../src/procfs/sockets.js";
import { isEngineConnection } from "../../src/runtimes/docker/client-evidence.js";
import { cleanupAll, isAlive, killAndWait, python3, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";

const procfs = new ProcFs("/proc");
/** The socket inodes of `pid`, read as a cycle's client evidence reads them (a real client's few fds are never cut). */
function inodesOf(pid: number): number[] {
  const inodes = socketInodes(procfs, pid, new FdReadBudget(64, 1_000));
  if (typeof inodes === "string") throw new Error(`the fds of ${pid} were cut: ${inodes}`);
  return inodes;
}
const dir = mkdtempSync(join(tmpdir(), "ptyr-sockdiag-"));
const ENGINE = join(dir, "engine.sock");
const OTHER = join(dir, "other.sock");
const accepted: Socket[] = [];
let servers: Server[] = [];
let reader: UnixPeersReader;

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => accepted.push(socket));
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}

/** A python process connected to `path`, waiting for its stdin to close. */
async function connectedProcess(path: string): Promise<number> {
  const child = spawn(
    python3(),
    ["-c", `import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nprint("up",flush=True)\nsys.stdin.read()`],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const pid = child.pid as number;
  trackProcess(pid, "unix socket client", child);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`client exited ${code}`)));
  });
  return pid;
}

const connectedTo = (pid: number, path: string): boolean => {
  const table = reader.read();
  const file = socketFileId(path);
  return inodesOf(pid).some((ino) => isEngineConnection(table, file, ino));
};

beforeAll(async () => {
  const load = loadUnixPeersReader();
  if (load.reader === null) throw new Error(`the sock_diag addon is required here: ${load.reason} (npm ci builds it with a C toolchain)`);
  reader = load.reader;
  servers = [await listen(ENGINE), await listen(OTHER)];
});

afterAll(async () => {
  for (const socket of accepted) socket.destroy();
  for (const server of servers) server.close();
  await cleanupAll();
  rmSync(dir, { recursive: true, force: true });
});

describe("sock_diag on the real kernel", () => {
  it("names the socket file a client process is connected to, and only that one", async () => {
    const toEngine = await connectedProcess(ENGINE);
    const toOther = await connectedProcess(OTHER);
    expect(connectedTo(toEngine, ENGINE)).toBe(true);
    expect(connectedTo(toEngine, OTHER)).toBe(false);
    expect(connectedTo(toOther, OTHER)).toBe(true);
    expect(connectedTo(toOther, ENGINE)).toBe(false);
  });

  it("forgets the connection once the client is SIGKILLed", async () => {
    const pid = await connectedProcess(ENGINE);
    const toEngine = inodesOf(pid).filter((ino) => isEngineConnection(reader.read(), socketFileId(ENGINE), ino));
    expect(toEngine).toHaveLength(1);
    await killAndWait(pid);
    expect(isAlive(pid)).toBe(false);
    // (Sockets it inherited from this test process outlive it: only its own connection is checked.)
    await waitFor(() => toEngine.every((ino) => !reader.read().has(ino)), 5_000, "the client's connection to leave the table");
  });

  it("a socket file replaced at the same path is another file", async () => {
    const before = socketFileId(ENGINE);
    const pid = await connectedProcess(ENGINE);
    // close() stops listening at once; its callback would wait for the accepted connections.
    (servers[0] as Server).close();
    rmSync(ENGINE, { force: true });
    servers[0] = await listen(ENGINE);
    expect(socketFileId(ENGINE)).not.toEqual(before);
    // Still connected to the old file's listener, which no longer is the engine socket.
    expect(connectedTo(pid, ENGINE)).toBe(false);
  });
});
