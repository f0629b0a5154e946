// Proves the integration harness on the real Docker engine: the leak it makes is the real leak, and cleanup is complete.
import { readFileSync, readlinkSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeDev, formatDev } from "../../src/procfs/parse.js";
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
  ptyNr,
  removeTestContainers,
  requireDocker,
  sleep,
  startContainer,
  tracked,
  waitFor,
} from "./harness/index.js";

const HOST_DEVPTS = formatDev(statSync("/dev/pts").dev);
const VICTIM = "harness-victim";
const VICTIM_NAME = `${TEST_PREFIX}${VICTIM}`;

let baselineNr = 0;
let victimId = "";

beforeAll(async () => {
  await requireDocker();
  baselineNr = ptyNr();
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
    const before = ptyNr();
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

    // script's own host pty is gone with it; the container's pty remains: one more than before.
    await waitFor(() => ptyNr() === before + 1, 10_000, `pty.nr to settle at ${before + 1} (now ${ptyNr()})`);
    await sleep(1_000);
    expect(ptyNr()).toBe(before + 1);
    expect(isAlive(leaked.shellPid)).toBe(true);
    expect((await inspectExec(leaked.execId)).Running).toBe(true);
  });

  it("keeps an attached session's client alive, and input reaches the shell", async () => {
    const before = ptyNr();
    const session = await attachedExecSession(VICTIM_NAME);
    expect(isAlive(session.clientPid)).toBe(true);
    // script holds a host pty for the client, the exec holds the container's: two more.
    expect(ptyNr()).toBe(before + 2);

    session.sendInput("echo ptyr-$((6*7))\r");
    // The tty echoes what was typed; only the shell running it prints the product.
    await waitFor(() => session.output().includes("ptyr-42"), 10_000, "the shell to run the typed command");

    await session.close();
    expect(isAlive(session.shellPid)).toBe(false);
    expect(isAlive(session.clientPid)).toBe(false);
    await waitFor(async () => !(await inspectExec(session.execId)).Running, 10_000, "the exec to stop running");
    await waitFor(() => ptyNr() === before, 10_000, `pty.nr back to ${before} (now ${ptyNr()})`);
  });

  it("runs a docker run -t container whose init holds the container's own pty", async () => {
    await dockerRunTty("harness-tty");
    const initPid = await containerPid(`${TEST_PREFIX}harness-tty`);
    const stdin = statSync(`/proc/${initPid}/fd/0`);
    expect(decodeDev(stdin.rdev).major).toBe(136);
    expect(formatDev(stdin.dev)).not.toBe(HOST_DEVPTS);
    expect(readFileSync(`/proc/${initPid}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m);
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
    const before = tracked();
    expect(before.containers).toContain(VICTIM_NAME);
    expect(before.pids).toContain(second.shellPid);

    await cleanupAll();

    expect(tracked()).toEqual({ pids: [], containers: [] });
    expect(isAlive(second.shellPid)).toBe(false);
    const names = await containerNames();
    expect(names.filter((name) => name === VICTIM_NAME || name === `${TEST_PREFIX}harness-tty`)).toEqual([]);
    await waitFor(() => ptyNr() <= baselineNr, 15_000, `pty.nr back to ${baselineNr} (now ${ptyNr()})`);
  });
});
