// Proves the CRI harness on a real private containerd (Debian's, CRI plugin on): a `kubectl exec -it`-style
// session whose streaming client is SIGKILLed leaves its shell and pty behind, until the pod is stopped.
import { readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { formatDev } from "../../src/procfs/parse.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { cleanupAll, cmdlineOf, isAlive, sleep, waitFor } from "./support/index.js";
import { slaveKey, accountedPtys } from "./support/accounting.js";
import { CRI_TEST_IMAGE, startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { CriClient, type KubernetesIdentity } from "./support/cri.js";
import { execPidFiles, leakCriExec, taskBundle } from "./support/cri-exec.js";

const procfs = new ProcFs("/proc");
const HOST_DEVPTS = formatDev(statSync("/dev/pts").dev);
const POD: KubernetesIdentity = { namespace: "ptyr-test", pod: "leaky-pod", podUid: "3f2a9c1e-7b4d-4e2a-9f10-5c6d7e8f9a0b", container: "shell" };

let containerd: PrivateContainerd;
let cri: CriClient;
let sandbox: { id: string; config: object } | null = null;
let containerId = "";

/** Fd targets of `pid` whose link text ends with `suffix`. */
function fdTargetsEnding(pid: number, suffix: string): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.endsWith(suffix)) targets.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return targets;
}

beforeAll(async () => {
  containerd = await startPrivateContainerd("cri");
  cri = new CriClient(containerd.socket);
}, 120_000);

afterAll(async () => {
  try {
    if (sandbox) {
      await cri.stopPodSandbox(sandbox.id);
      await cri.removePodSandbox(sandbox.id);
    }
  } finally {
    cri?.close();
    await cleanupAll();
    await containerd?.destroy();
  }
}, 120_000);

describe("the CRI harness on a private containerd", () => {
  it("answers CRI runtime.v1 on the instance's own socket", async () => {
    const version = await cri.version();
    expect(version).toMatchObject({ runtime_name: "containerd", runtime_api_version: "v1" });
    expect(version.runtime_version).toMatch(/^1\.6\./);
  });

  it("runs a host-network pod and a container carrying the kubelet's labels, in cgroup /k8s.io/<id>", async () => {
    sandbox = await cri.runPodSandbox(POD);
    containerId = await cri.createContainer(sandbox, POD, CRI_TEST_IMAGE, ["sleep", "1000000"]);
    await cri.startContainer(containerId);

    const info = JSON.parse(await containerd.ctr(["containers", "info", containerId])) as { Labels: Record<string, string>; SandboxID?: string };
    expect(info.Labels).toMatchObject({
      "io.kubernetes.pod.namespace": POD.namespace,
      "io.kubernetes.pod.name": POD.pod,
      "io.kubernetes.pod.uid": POD.podUid,
      "io.kubernetes.container.name": POD.container,
      "io.cri-containerd.kind": "container",
    });
    const initPid = Number(readFileSync(`${taskBundle(containerd, containerId)}/init.pid`, "utf8").trim());
    expect(cmdlineOf(initPid)).toEqual(["sleep", "1000000"]);
    // Its own pid namespace, as the kubelet asks by default: the init is pid 1 inside.
    expect(readFileSync(`/proc/${initPid}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m);
    // cgroup v1 with the cgroupfs driver here: every hierarchy names /k8s.io/<container id>.
    expect(readFileSync(`/proc/${initPid}/cgroup`, "utf8")).toMatch(new RegExp(`^\\d+:pids:/k8s\\.io/${containerId}$`, "m"));
    // Host network: the sandbox shares the host's network namespace.
    expect(readlinkSync(`/proc/${initPid}/ns/net`)).toBe(readlinkSync("/proc/self/ns/net"));
  });

  it("leaks an exec: the streaming client is SIGKILLed, the shell, its pty and containerd's exec record stay", async () => {
    const leaked = await leakCriExec(cri, containerd, containerId);
    expect(leaked.clientOutput).toContain("ptyr-42");
    expect(isAlive(leaked.clientPid)).toBe(false);
    expect(isAlive(leaked.shellPid)).toBe(true);

    // The shell's tty is a slave of the container's own devpts, counted by pty.nr.
    const key = slaveKey(leaked.shellPid);
    expect(key.startsWith(`${HOST_DEVPTS}:`)).toBe(false);
    expect((await accountedPtys()).keys.has(key)).toBe(true);

    // The shim of this instance holds the master and is the shell's parent.
    const holders = scanProc(procfs).ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key);
    const masterHolders = holders.filter((fd) => fd.role === "master").map((fd) => fd.pid);
    expect(masterHolders).toHaveLength(1);
    const shim = masterHolders[0] as number;
    expect(cmdlineOf(shim)[0]).toMatch(/containerd-shim-runc-v2$/);
    expect(cmdlineOf(shim)).toContain(containerd.socket);
    expect(readFileSync(`/proc/${leaked.shellPid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]).toBe(String(shim));
    expect(readFileSync(`/proc/${leaked.shellPid}/cgroup`, "utf8")).toMatch(new RegExp(`^\\d+:pids:/k8s\\.io/${containerId}$`, "m"));

    // containerd's own record: the exec's pid file beside init.pid, and ExecID in the task's pids.
    expect(execPidFiles(containerd, containerId).get(leaked.execId)).toBe(leaked.shellPid);
    const ps = await containerd.ctr(["tasks", "ps", containerId]);
    expect(ps).toMatch(new RegExp(`^${leaked.shellPid}\\s+.*${leaked.execId}`, "m"));

    // The client-gone sign: containerd closed its end of <exec-id>-stdout, the shim still holds it.
    await waitFor(
      () => fdTargetsEnding(containerd.pid, `${leaked.execId}-stdout`).length === 0,
      10_000,
      "containerd to close the exec's stdout FIFO",
    );
    expect(fdTargetsEnding(shim, `${leaked.execId}-stdout`).length).toBeGreaterThan(0);

    // And it stays so: nothing ends the session while the pod runs.
    await sleep(2_000); // no daemon runs here, so no cycle to count: a time for containerd to end it, if it would
    expect(isAlive(leaked.shellPid)).toBe(true);
    expect((await accountedPtys()).keys.has(key)).toBe(true);
  });

  it("stopping the pod ends the leaked shell and frees its pty", async () => {
    const before = [...execPidFiles(containerd, containerId)];
    expect(before.length).toBeGreaterThan(0);
    const keys = before.map(([, pid]) => slaveKey(pid));
    const current = sandbox as { id: string };
    await cri.stopPodSandbox(current.id);
    await cri.removePodSandbox(current.id);
    sandbox = null;
    for (const [, pid] of before) await waitFor(() => !isAlive(pid), 20_000, `exec shell ${pid} to exit`);
    await waitFor(
      () => {
        const live = new Set(scanProc(procfs).ptyFds.map((fd) => ptyKey(fd.devptsDev, fd.index)));
        return keys.every((key) => !live.has(key));
      },
      20_000,
      "the leaked ptys to be released",
    );
  });
});
