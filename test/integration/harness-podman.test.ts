// Proves the Podman harness on a real private Podman (Debian's 4.3, root, cgroupfs): a `podman exec -it`
// whose client is SIGKILLed leaves its shell and pty behind; conmon keeps one copy of the master.
import { readFileSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { formatDev } from "../../src/procfs/parse.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { cleanupAll, cmdlineOf, isAlive, sleep, waitFor } from "./support/index.js";
import { slaveKey, accountedPtys } from "./support/accounting.js";
import { execConmons, leakPodmanExec, ptmxFds, startPrivatePodman, type PodmanLeakedExec, type PrivatePodman } from "./support/podman.js";

const procfs = new ProcFs("/proc");
const HOST_DEVPTS = formatDev(statSync("/dev/pts").dev);

let pm: PrivatePodman;
let containerId = "";
let leaked: PodmanLeakedExec | null = null;

function pidsCgroup(pid: number): string {
  return /^\d+:pids:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, "utf8"))?.[1] ?? "";
}

beforeAll(async () => {
  pm = await startPrivatePodman("harness");
  containerId = await pm.runContainer("ptyr-test-podman-victim");
  await pm.startService();
}, 120_000);

afterAll(async () => {
  try {
    await cleanupAll();
  } finally {
    await pm?.destroy();
  }
}, 120_000);

describe("the Podman harness on a private Podman", () => {
  it("runs the test image as root with the cgroupfs manager: cgroup /libpod_parent/libpod-<id>", async () => {
    expect(await pm.podman(["--version"])).toMatch(/^podman version 4\./);
    const initPid = Number((await pm.podman(["inspect", "--format", "{{.State.Pid}}", containerId])).trim());
    expect(cmdlineOf(initPid)).toEqual(["sleep", "1000000"]);
    expect(pidsCgroup(initPid)).toBe(`/libpod_parent/libpod-${containerId}`);
  });

  it("leaks an exec: the client is SIGKILLed, the shell and its pty stay, conmon keeps one master fd", async () => {
    leaked = await leakPodmanExec(pm, containerId);
    expect(isAlive(leaked.clientPid)).toBe(false);
    expect(isAlive(leaked.shellPid)).toBe(true);

    const key = slaveKey(leaked.shellPid);
    expect(key.startsWith(`${HOST_DEVPTS}:`)).toBe(false);
    expect((await accountedPtys()).keys.has(key)).toBe(true);
    // The exec's conmon holds the master and is the shell's parent; it sits in podman's conmon cgroup.
    const masters = scanProc(procfs)
      .ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key && fd.role === "master")
      .map((fd) => fd.pid);
    expect(masters).toEqual([leaked.conmonPid]);
    const argv = cmdlineOf(leaked.conmonPid);
    expect(argv).toEqual(expect.arrayContaining(["-c", containerId, "-u", leaked.sessionId, "-t", "-i", "--exec-attach"]));
    expect(readFileSync(`/proc/${leaked.shellPid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]).toBe(String(leaked.conmonPid));
    expect(pidsCgroup(leaked.shellPid)).toBe(`/libpod_parent/libpod-${containerId}`);
    expect(pidsCgroup(leaked.conmonPid)).toBe("/libpod_parent/conmon");
    // The client-gone sign: two ptmx fds while attached (stdin and stdout copies), one after.
    expect(leaked.conmonMastersAttached).toBe(2);
    await waitFor(() => ptmxFds(leaked?.conmonPid ?? 0) === 1, 10_000, "conmon to close its stdin copy of the master");

    // Podman's own record: the session in ExecIDs, Running with the shell's pid; the pid file agrees.
    const container = await pm.api("GET", `/v4.0.0/libpod/containers/${containerId}/json`);
    expect((container.json as { ExecIDs: string[] }).ExecIDs).toContain(leaked.sessionId);
    const exec = await pm.api("GET", `/v4.0.0/libpod/exec/${leaked.sessionId}/json`);
    expect(exec.json).toMatchObject({
      ID: leaked.sessionId,
      ContainerID: containerId,
      Running: true,
      Pid: leaked.shellPid,
      ProcessConfig: { tty: true, entrypoint: "sh" },
    });
    const conmon = execConmons(containerId).find((c) => c.sessionId === leaked?.sessionId);
    expect(conmon && Number(readFileSync(conmon.pidFile, "utf8").trim())).toBe(leaked.shellPid);

    await sleep(2_000); // no daemon runs here, so no cycle to count: a time for Podman to end it, if it would
    expect(isAlive(leaked.shellPid)).toBe(true);
    expect((await accountedPtys()).keys.has(key)).toBe(true);
  });

  it("has no exec remove call in this version (4.3): the kill fallback is a signal", async () => {
    const removed = await pm.api("POST", `/v4.0.0/libpod/exec/${leaked?.sessionId ?? "none"}/remove`, { Force: true });
    expect(removed.status).toBe(404);
    expect(isAlive(leaked?.shellPid ?? 0)).toBe(true);
  });

  it("removing the container ends the leaked shell and frees its pty", async () => {
    const session = leaked as PodmanLeakedExec;
    const key = slaveKey(session.shellPid);
    await pm.podman(["rm", "-f", "-t", "0", containerId]);
    await waitFor(() => !isAlive(session.shellPid) && !isAlive(session.conmonPid), 20_000, "the exec shell and its conmon to exit");
    await waitFor(() => !scanProc(procfs).ptyFds.some((fd) => ptyKey(fd.devptsDev, fd.index) === key), 20_000, `${key} to be released`);
  });
});
