// The containerd adapter against a real private containerd with CRI: it lists a leaked kubectl-exec-style session
// with its pid and the pod's labels, sees it start in the event stream, and kills it by exec ID; the pty is freed.
// Runs about a minute: the shim frees a killed exec's pty only at its next garbage collection (see that test).
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { RuntimeUnavailableError } from "../../src/errors.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { ContainerdRuntime, type ContainerdExecEvent } from "../../src/runtimes/containerd/containerd.js";
import { cleanupAll, isAlive, waitFor } from "./support/index.js";
import { slaveKey, accountedPtys } from "./support/accounting.js";
import { CRI_TEST_IMAGE, startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { CriClient, type KubernetesIdentity } from "./support/cri.js";
import { leakCriExec, type CriLeakedExec } from "./support/cri-exec.js";

const procfs = new ProcFs("/proc");
const POD: KubernetesIdentity = { namespace: "ptyr-test", pod: "adapter-pod", podUid: "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", container: "shell" };

let containerd: PrivateContainerd;
let cri: CriClient;
let runtime: ContainerdRuntime;
let sandbox: { id: string; config: object } | null = null;
let containerId = "";
let leaked: CriLeakedExec;
const events: ContainerdExecEvent[] = [];
let subscription: { close(): void } | null = null;

beforeAll(async () => {
  containerd = await startPrivateContainerd("adapter");
  cri = new CriClient(containerd.socket);
  runtime = new ContainerdRuntime({ socket: containerd.socket, namespaces: ["k8s.io"] });
  sandbox = await cri.runPodSandbox(POD);
  containerId = await cri.createContainer(sandbox, POD, CRI_TEST_IMAGE, ["sleep", "1000000"]);
  await cri.startContainer(containerId);
  subscription = runtime.subscribeExecEvents({ onEvent: (event) => events.push(event), onClose: () => undefined });
  leaked = await leakCriExec(cri, containerd, containerId);
}, 120_000);

afterAll(async () => {
  try {
    subscription?.close();
    runtime?.close();
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

describe("ContainerdRuntime on a private containerd with CRI", () => {
  it("answers its version, and fails with a runtime error on a socket where nothing listens", async () => {
    expect(await runtime.version()).toMatch(/^1\.6\./);
    const nowhere = new ContainerdRuntime({ socket: `${containerd.root}/nothing.sock`, namespaces: ["k8s.io"], callTimeoutMs: 1_000 });
    try {
      const failure = nowhere.version();
      await expect(failure).rejects.toBeInstanceOf(RuntimeUnavailableError);
      await expect(failure).rejects.toThrow(/containerd at .*nothing\.sock: Version/);
    } finally {
      nowhere.close();
    }
  });

  it("lists the pod's container in k8s.io with its init pid and Kubernetes identity from labels", async () => {
    const containers = await runtime.listContainers();
    const mine = containers.find((c) => c.id === containerId);
    expect(mine).toMatchObject({
      namespace: "k8s.io",
      runtime: "containerd",
      kubernetes: { namespace: POD.namespace, pod: POD.pod, podUid: POD.podUid, container: POD.container },
    });
    expect(mine?.initPid).toBeGreaterThan(0);
    // The sandbox (pause) container is a task too, with no container-name label: no Kubernetes identity.
    expect(containers.filter((c) => c.id !== containerId).every((c) => c.kubernetes === null)).toBe(true);
    expect(await runtime.getContainer({ namespace: "k8s.io", id: containerId })).toMatchObject({ id: containerId, initPid: mine?.initPid });
    expect(await runtime.getContainer({ namespace: "k8s.io", id: "f".repeat(64) })).toBeNull();
    // A namespace that does not exist here is skipped, not an error.
    const other = new ContainerdRuntime({ socket: containerd.socket, namespaces: ["no-such-namespace"] });
    try {
      expect(await other.listContainers()).toEqual([]);
    } finally {
      other.close();
    }
  });

  it("lists the leaked exec from Tasks.ListPids (exec ID in ProcessDetails) with its pid and tty", async () => {
    const execs = await runtime.listExecs({ namespace: "k8s.io", id: containerId });
    expect(execs).toEqual([
      { id: leaked.execId, container: { namespace: "k8s.io", id: containerId }, pid: leaked.shellPid, running: true, tty: true },
    ]);
    expect(await runtime.listExecs({ namespace: "k8s.io", id: "f".repeat(64) })).toEqual([]);
  });

  it("saw the exec start in the event stream", async () => {
    await waitFor(() => events.some((e) => e.topic === "/tasks/exec-started" && e.execId === leaked.execId), 10_000, "the exec-started event");
    expect(events.find((e) => e.execId === leaked.execId)).toEqual({
      topic: "/tasks/exec-started",
      namespace: "k8s.io",
      containerId,
      execId: leaked.execId,
      pid: leaked.shellPid,
    });
  });

  it("kills the exec through containerd (Tasks.Kill with exec_id): the shell exits, the record goes, later the pty is freed", async () => {
    const key = slaveKey(leaked.shellPid);
    expect((await accountedPtys()).keys.has(key)).toBe(true);
    const shim = Number(readFileSync(`/proc/${leaked.shellPid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);

    expect(await runtime.killExec({ id: leaked.execId, container: { namespace: "k8s.io", id: containerId } }, "SIGKILL")).toBe("signalled");
    const killedAt = Date.now();
    await waitFor(() => !isAlive(leaked.shellPid), 10_000, `exec shell ${leaked.shellPid} to exit`);
    await waitFor(() => events.some((e) => e.topic === "/tasks/exit" && e.execId === leaked.execId), 10_000, "the exec's exit event");
    // CRI's own exec goroutine wakes on the exit and deletes the exec: containerd no longer lists it.
    await waitFor(async () => (await runtime.listExecs({ namespace: "k8s.io", id: containerId })).length === 0, 10_000, "the exec to leave ListPids");
    // The container itself is untouched.
    const container = await runtime.getContainer({ namespace: "k8s.io", id: containerId });
    expect(container?.initPid && isAlive(container.initPid)).toBe(true);

    // containerd 1.6's shim does not close an exec's console when the exec ends; Go's finalizer does, at its
    // next garbage collection (forced at least every 2 minutes). Only then does pty.nr drop.
    const holders = (): string[] =>
      scanProc(procfs)
        .ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key)
        .map((fd) => `${fd.role}:${fd.pid}`);
    // Only the shim may still hold it (the finalizer can already have run, on a busy host it often has).
    expect([[], [`master:${shim}`]]).toContainEqual(holders());
    await waitFor(() => holders().length === 0, 130_000, `the shim to close the master of ${key}`, 500);
    console.log(`containerd shim closed the killed exec's pty master ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
    expect((await accountedPtys()).keys.has(key)).toBe(false);
  }, 160_000);

  it("a second kill of the same exec reports it gone", async () => {
    expect(await runtime.killExec({ id: leaked.execId, container: { namespace: "k8s.io", id: containerId } }, "SIGKILL")).toBe("gone");
  });
});
