// Proves the integration harness on the real Docker engine: the leak it makes is the real leak, and cleanup is complete.
import { readFileSync, readlinkSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { decodeDev, formatDev } from "../../src/procfs/parse.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import {
  TEST_PREFIX,
  attachedExecSession,
  cleanupAll,
  containerPid,
  dockerCli,
  dockerRunTty,
  environOf,
  execIds,
  inspectExec,
  isAlive,
  leakExecSession,
  removeTestContainers,
  requireDocker,
  sleep,
  startContainer,
  tracked,
  waitFor,
} from "./support/index.js";
import { slaveKey, accountedPtys } from "./support/accounting.js";

const HOST_DEVPTS = formatDev(statSync("/dev/pts").dev);
const VICTIM = "harness-victim";
const VICTIM_NAME = `${TEST_PREFIX}${VICTIM}`;

let victimId = "";
const procfs = new ProcFs("/proc");

/** Pids holding `key` (either end) in a fresh scan of /proc. */
function holdersOf(key: string): number[] {
  return scanProc(procfs)
    .ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key)
    .map((fd) => fd.pid);
}

beforeAll(async () => {
  await requireDocker();
  victimId = await startContainer({ name: VICTIM, labels: { "org.ptyreaper.test": "harness" } });
});

afterAll(cleanupAll);

async function containerNames(): Promise<string[]> {
  return (await dockerCli(["ps", "-a", "--format", "{{.Names}}"])).split("\n").filter(Boolean);
}

describe("the harness on the real Docker engine", () => {
  it("fails loudly, not by skipping, when the engine is unreachable", async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = "unix:///nonexistent/ptyreaper-test.sock";
    try {
      await expect(requireDocker()).rejects.toThrow(/Docker engine unreachable.*provision-test-host\.sh/s);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  it("starts a busybox container with no network, its name prefixed and labels set", async () => {
    const inspect = JSON.parse(await dockerCli(["inspect", victimId])) as [
      { Name: string; HostConfig: { NetworkMode: string }; Config: { Labels: Record<string, string>; Tty: boolean }; State: { Running: boolean } },
    ];
    expect(inspect[0]).toMatchObject({
      Name: `/${VICTIM_NAME}`,
      HostConfig: { NetworkMode: "none" },
      Config: { Labels: { "org.ptyreaper.test": "harness" }, Tty: false },
      State: { Running: true },
    });
  });

  it("leaks an exec session: the client is SIGKILLed, the shell and its pty stay", async () => {
    const leaked = await leakExecSession(VICTIM_NAME, { env: { PTYREAPER_EXEMPT: "1" } });

    expect(isAlive(leaked.clientPid)).toBe(false);
    expect(isAlive(leaked.shellPid)).toBe(true);
    expect(await execIds(VICTIM_NAME)).toContain(leaked.execId);
    const exec = await inspectExec(leaked.execId);
    expect(exec).toMatchObject({ ID: leaked.execId, Running: true, Pid: leaked.shellPid, ProcessConfig: { tty: true, entrypoint: "sh" } });
    expect(exec.ContainerID).toBe(victimId);
    expect(environOf(leaked.shellPid)).toContain("PTYREAPER_EXEMPT=1");

    // The shell's stdin is a slave of the container's devpts, not the host's.
    expect(readlinkSync(`/proc/${leaked.shellPid}/fd/0`)).toMatch(/^\/dev\/pts\/\d+$/);
    const slave = statSync(`/proc/${leaked.shellPid}/fd/0`);
    expect(decodeDev(slave.rdev).major).toBe(136);
    expect(formatDev(slave.dev)).not.toBe(HOST_DEVPTS);

    // The leaked pty is one of the ptys pty.nr counts, and stays so after the client is long gone.
    const key = slaveKey(leaked.shellPid);
    expect((await accountedPtys()).keys.has(key)).toBe(true);
    await sleep(1_000); // no daemon runs here, so no cycle to count: a time for the engine to free it, if it would
    expect((await accountedPtys()).keys.has(key)).toBe(true);
    expect(isAlive(leaked.shellPid)).toBe(true);
    expect((await inspectExec(leaked.execId)).Running).toBe(true);
    // The shim keeps the master: both ends of the leaked pty are still held.
    const fds = scanProc(procfs).ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key);
    expect(fds.filter((fd) => fd.role === "slave").map((fd) => fd.pid)).toContain(leaked.shellPid);
    expect(fds.filter((fd) => fd.role === "master").length).toBeGreaterThan(0);
  });

  it("keeps an attached session's client alive, and input reaches the shell", async () => {
    const session = await attachedExecSession(VICTIM_NAME);
    expect(isAlive(session.clientPid)).toBe(true);
    // script holds a host pty for the client, the exec holds the container's: both counted in pty.nr.
    const clientKey = slaveKey(session.clientPid);
    const shellKey = slaveKey(session.shellPid);
    expect(clientKey.startsWith(`${HOST_DEVPTS}:`)).toBe(true);
    expect(shellKey.startsWith(`${HOST_DEVPTS}:`)).toBe(false);
    expect(holdersOf(shellKey)).toContain(session.shellPid);
    const open = await accountedPtys();
    expect(open.keys.has(clientKey) && open.keys.has(shellKey)).toBe(true);

    session.sendInput("echo ptyr-$((6*7))\r");
    // The tty echoes what was typed; only the shell running it prints the product.
    await waitFor(() => session.output().includes("ptyr-42"), 10_000, "the shell to run the typed command");

    await session.close();
    expect(isAlive(session.shellPid)).toBe(false);
    expect(isAlive(session.clientPid)).toBe(false);
    await waitFor(async () => !(await inspectExec(session.execId)).Running, 10_000, "the exec to stop running");
    // Both ptys are freed: nobody holds either end. (pty.nr is global, so other processes may move it.)
    await waitFor(() => holdersOf(shellKey).length === 0 && holdersOf(clientKey).length === 0, 10_000, `${shellKey} and ${clientKey} to be released`);
  });

  it("runs a docker run -t container whose init holds the container's own pty", async () => {
    await dockerRunTty("harness-tty");
    const initPid = await containerPid(`${TEST_PREFIX}harness-tty`);
    const stdin = statSync(`/proc/${initPid}/fd/0`);
    expect(decodeDev(stdin.rdev).major).toBe(136);
    expect(formatDev(stdin.dev)).not.toBe(HOST_DEVPTS);
    expect(readFileSync(`/proc/${initPid}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m);
  });

  it("fails at once with docker's own message when the exec cannot start", async () => {
    await startContainer({ name: "harness-stopped", cmd: ["true"] });
    await waitFor(
      async () => (await dockerCli(["inspect", "--format", "{{.State.Running}}", `${TEST_PREFIX}harness-stopped`])).trim() === "false",
      10_000,
      "the container to stop",
    );
    const failure = leakExecSession(`${TEST_PREFIX}harness-stopped`);
    await expect(failure).rejects.toThrow(/script exited .*is not running/s);
    await expect(failure).rejects.not.toThrow(/timed out/);
  });

  it("inspectExec rejects for an unknown exec id", async () => {
    await expect(inspectExec("0".repeat(64))).rejects.toThrow(/HTTP 404/);
  });

  it("removeTestContainers removes only containers with the given ptyr-test- prefix", async () => {
    await startContainer({ name: "rm-a" });
    await startContainer({ name: "rm-b" });
    await expect(removeTestContainers("victim")).rejects.toThrow(/does not start with ptyr-test-/);

    const removed = await removeTestContainers(`${TEST_PREFIX}rm-`);
    expect(removed.sort()).toEqual([`${TEST_PREFIX}rm-a`, `${TEST_PREFIX}rm-b`]);
    const names = await containerNames();
    expect(names).not.toContain(`${TEST_PREFIX}rm-a`);
    expect(names).toContain(VICTIM_NAME);
  });

  it("cleanupAll ends every process and container it started, and the ptys are freed", async () => {
    const second = await leakExecSession(VICTIM_NAME);
    const containerDevpts = slaveKey(second.shellPid).split(":").slice(0, 2).join(":");
    expect(scanProc(procfs).ptyFds.some((fd) => fd.devptsDev === containerDevpts)).toBe(true);
    const before = tracked();
    expect(before.containers).toContain(VICTIM_NAME);
    expect(before.pids).toContain(second.shellPid);

    await cleanupAll();

    expect(tracked()).toEqual({ pids: [], containers: [] });
    expect(isAlive(second.shellPid)).toBe(false);
    const names = await containerNames();
    expect(names.filter((name) => name === VICTIM_NAME || name === `${TEST_PREFIX}harness-tty`)).toEqual([]);
    // No process holds any pty of the removed container's devpts instance any more.
    await waitFor(() => !scanProc(procfs).ptyFds.some((fd) => fd.devptsDev === containerDevpts), 15_000, `ptys of ${containerDevpts} to be released`);
    // ...and pty.nr no longer counts them.
    expect([...(await accountedPtys()).keys].some((key) => key.startsWith(`${containerDevpts}:`))).toBe(false);
  });
});
