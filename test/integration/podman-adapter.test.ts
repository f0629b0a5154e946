// The Podman adapter against a real private Podman 4.3 and its REST service: it lists a leaked `podman exec -it` session
// with its pid; 4.3 has no exec removal, so the kill falls back to a signal by pid, after which the pty is freed.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { RuntimeUnavailableError } from "../../src/errors.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { attribute } from "../../src/domain/attribution.js";
import { processFactsLookup, readProcessFacts } from "../../src/runtimes/facts.js";
import { PodmanRuntime } from "../../src/runtimes/podman/podman.js";
import { cleanupAll, isAlive, killAndWait, waitFor } from "./support/index.js";
import { slaveKey } from "./support/accounting.js";
import { leakPodmanExec, startPrivatePodman, type PodmanLeakedExec, type PrivatePodman } from "./support/podman.js";

const procfs = new ProcFs("/proc");
let pm: PrivatePodman;
let runtime: PodmanRuntime;
let containerId = "";
let leaked: PodmanLeakedExec;

const holdersOf = (key: string): string[] =>
  scanProc(procfs)
    .ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key)
    .map((fd) => `${fd.role}:${fd.pid}`);

beforeAll(async () => {
  pm = await startPrivatePodman("adapter");
  containerId = await pm.runContainer("ptyr-test-podman-adapter", undefined, { "org.ptyreaper.test": "podman-adapter" });
  await pm.startService();
  runtime = new PodmanRuntime({ socket: pm.socket });
  leaked = await leakPodmanExec(pm, containerId);
}, 120_000);

afterAll(async () => {
  try {
    await cleanupAll();
  } finally {
    await pm?.destroy();
  }
}, 120_000);

describe("PodmanRuntime on a private Podman 4.3", () => {
  it("answers its version, and fails with a runtime error where nothing listens", async () => {
    expect(await runtime.version()).toMatch(/^4\.3\./);
    await expect(new PodmanRuntime({ socket: `${pm.root}/nothing.sock` }).version()).rejects.toBeInstanceOf(RuntimeUnavailableError);
  });

  it("lists the running container with its init pid and labels", async () => {
    const containers = await runtime.listContainers();
    const initPid = Number((await pm.podman(["inspect", "--format", "{{.State.Pid}}", containerId])).trim());
    expect(containers).toEqual([
      {
        namespace: null,
        id: containerId,
        runtime: "podman",
        initPid,
        labels: expect.objectContaining({ "org.ptyreaper.test": "podman-adapter" }) as unknown,
        name: "ptyr-test-podman-adapter",
        kubernetes: null,
      },
    ]);
    expect(await runtime.getContainer({ namespace: null, id: "f".repeat(64) })).toBeNull();
  });

  it("lists the leaked exec session with its pid and tty", async () => {
    expect(await runtime.listExecs({ namespace: null, id: containerId })).toEqual([
      { id: leaked.sessionId, container: { namespace: null, id: containerId }, pid: leaked.shellPid, running: true, tty: true },
    ]);
    expect(await runtime.listExecs({ namespace: null, id: "f".repeat(64) })).toEqual([]);
  });

  it("attribution from /proc agrees with the runtime: podman, this container, this exec session", () => {
    const key = slaveKey(leaked.shellPid);
    const masterPid = scanProc(procfs).ptyFds.find((fd) => ptyKey(fd.devptsDev, fd.index) === key && fd.role === "master")?.pid;
    const shell = readProcessFacts(procfs, leaked.shellPid);
    const master = masterPid === undefined ? null : readProcessFacts(procfs, masterPid);
    if (!shell) throw new Error(`shell ${leaked.shellPid} vanished`);
    expect(attribute(shell, master, processFactsLookup(procfs))).toMatchObject({
      runtime: "podman",
      containerId,
      execId: leaked.sessionId,
      role: "exec",
      sessionPid: leaked.shellPid,
    });
  });

  it("has no exec kill in 4.3 (unsupported); the signal fallback by pid ends the shell, conmon, and the pty", async () => {
    const key = slaveKey(leaked.shellPid);
    expect(holdersOf(key)).toEqual(expect.arrayContaining([`master:${leaked.conmonPid}`, `slave:${leaked.shellPid}`]));
    expect(await runtime.killExec({ id: leaked.sessionId, container: { namespace: null, id: containerId } }, "SIGTERM")).toBe("unsupported");
    expect(isAlive(leaked.shellPid)).toBe(true);
    // The wrong container for the right exec ID is not that exec.
    expect(await runtime.killExec({ id: leaked.sessionId, container: { namespace: null, id: "f".repeat(64) } }, "SIGTERM")).toBe("gone");

    // What the reaper does when the runtime has no call: signal the exec's pid (this test's own process).
    await killAndWait(leaked.shellPid);
    await waitFor(() => !isAlive(leaked.conmonPid), 15_000, `conmon ${leaked.conmonPid} to exit`);
    await waitFor(() => holdersOf(key).length === 0, 15_000, `${key} to be released`);
    const execs = await waitFor(
      async () => {
        const list = await runtime.listExecs({ namespace: null, id: containerId });
        return list.every((e) => !e.running) ? list : null;
      },
      15_000,
      "podman to record the exec as stopped",
    );
    expect(execs.filter((e) => e.id === leaked.sessionId).map((e) => e.running)).not.toContain(true);
    // The container's init lives on.
    const initPid = Number((await pm.podman(["inspect", "--format", "{{.State.Pid}}", containerId])).trim());
    expect(readFileSync(`/proc/${initPid}/cmdline`, "latin1")).toContain("sleep");
  });
});
