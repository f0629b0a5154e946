// Attribution from /proc on a host running Docker, containerd CRI and Podman at once, each with a leaked exec: every
// session is named by its own runtime, container and pod, once; container inits and runtime monitors are never a session.
import { existsSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { ptyKey } from "../../src/domain/types.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { attribute, monitorOf, type Attribution } from "../../src/domain/attribution.js";
import { processFactsLookup, readProcessFacts } from "../../src/runtimes/facts.js";
import { TEST_PREFIX, containerPid, leakExecSession, requireDocker, startContainer, type ExecSessionHandle } from "./support/index.js";
import { slaveKey } from "./support/accounting.js";
import {} from "./support/accounting.js";
import type { KubernetesIdentity } from "./support/cri.js";
import { leakCriExec, taskBundle, type CriLeakedExec } from "./support/cri-exec.js";
import { leakPodmanExec, type PodmanLeakedExec } from "./support/podman.js";
import { usePrivateRuntimes } from "./support/private-runtimes.js";

const procfs = new ProcFs("/proc");
const POD: KubernetesIdentity = { namespace: "ptyr-test", pod: "mixed-pod", podUid: "7c9e6679-7425-40de-944b-e07fc1f90ae7", container: "shell" };
// A kubelet with the cgroupfs driver gives pods /kubepods/<qos>/pod<uid>; a name of our own keeps clear of a real one.
const POD_CGROUP_PARENT = `/ptyr-test-kubepods/besteffort/pod${POD.podUid}`;

let criContainer = "";
let criLeak: CriLeakedExec;
let podmanContainer = "";
let podmanLeak: PodmanLeakedExec;
let dockerContainer = "";
let dockerLeak: ExecSessionHandle;
/** Host pids of the container inits (the CRI pod's sandbox too), as the runtimes record them. */
let initPids = new Set<number>();

/**
 * Every slave holder of the ptys of our three sessions, attributed with the master's holder from the same
 * scan and the container inits the runtimes record.
 */
function attributeOurs(): { pid: number; key: string; attribution: Attribution }[] {
  const keys = new Set([dockerLeak.shellPid, criLeak.shellPid, podmanLeak.shellPid].map((pid) => slaveKey(pid)));
  const scan = scanProc(procfs);
  const lookup = processFactsLookup(procfs);
  const masterOf = new Map<string, number>();
  for (const fd of scan.ptyFds) if (fd.role === "master") masterOf.set(ptyKey(fd.devptsDev, fd.index), fd.pid);
  const seen = new Set<string>();
  const result: { pid: number; key: string; attribution: Attribution }[] = [];
  for (const fd of scan.ptyFds) {
    const key = ptyKey(fd.devptsDev, fd.index);
    if (fd.role !== "slave" || !keys.has(key) || seen.has(`${fd.pid} ${key}`)) continue;
    seen.add(`${fd.pid} ${key}`);
    const holder = lookup(fd.pid);
    if (!holder) continue; // exited during the scan
    const masterPid = masterOf.get(key);
    const master = masterPid === undefined ? null : (lookup(masterPid) ?? null);
    result.push({ pid: fd.pid, key, attribution: attribute(holder, master, lookup, initPids) });
  }
  return result;
}

// Before the runtimes' hooks: without Docker they cannot load their test image, so say that first.
beforeAll(() => requireDocker());
// Nothing here talks to Podman's REST service: attribution reads /proc alone.
const runtimes = usePrivateRuntimes("mixed", { podmanService: false });

beforeAll(async () => {
  const { containerd, cri, podman: pm } = runtimes;
  criContainer = (await runtimes.runPod(POD, POD_CGROUP_PARENT)).containerId;
  criLeak = await leakCriExec(cri, containerd, criContainer);

  podmanContainer = await pm.runContainer("ptyr-test-mixed-podman");
  podmanLeak = await leakPodmanExec(pm, podmanContainer);

  dockerContainer = await startContainer({ name: "mixed-docker" });
  dockerLeak = await leakExecSession(`${TEST_PREFIX}mixed-docker`);

  const criInits = (await containerd.ctr(["tasks", "ls"]))
    .split("\n")
    .slice(1)
    .map((line) => Number(line.split(/\s+/)[1]))
    .filter((pid) => pid > 0);
  const podmanInit = Number((await pm.podman(["inspect", "--format", "{{.State.Pid}}", podmanContainer])).trim());
  initPids = new Set([await containerPid(dockerContainer), ...criInits, podmanInit]);
}, 120_000);

describe("attribution on a mixed host (Docker + containerd CRI + Podman)", () => {
  it("names each leaked session by its own runtime, container and pod", () => {
    const all = attributeOurs();
    const of = (pid: number): Attribution | undefined => all.find((a) => a.pid === pid)?.attribution;
    expect(of(dockerLeak.shellPid)).toMatchObject({
      runtime: "docker",
      containerId: dockerContainer,
      namespace: "moby",
      role: "exec",
      sessionPid: dockerLeak.shellPid,
      podUid: null,
    });
    expect(of(criLeak.shellPid)).toMatchObject({
      runtime: "containerd",
      containerId: criContainer,
      namespace: "k8s.io",
      role: "exec",
      sessionPid: criLeak.shellPid,
      podUid: POD.podUid,
    });
    expect(of(podmanLeak.shellPid)).toMatchObject({
      runtime: "podman",
      containerId: podmanContainer,
      execId: podmanLeak.sessionId,
      role: "exec",
      sessionPid: podmanLeak.shellPid,
    });
  });

  it("counts nothing twice: one session per exec, each pty under one runtime", () => {
    const all = attributeOurs();
    const ours = new Map([
      [dockerLeak.shellPid, "docker"],
      [criLeak.shellPid, "containerd"],
      [podmanLeak.shellPid, "podman"],
    ]);
    const sessions = new Map<string, Set<string>>();
    const runtimesOfKey = new Map<string, Set<string>>();
    for (const { key, attribution } of all) {
      if (attribution.sessionPid === null || !ours.has(attribution.sessionPid)) continue;
      const id = `${attribution.runtime} ${attribution.containerId} ${attribution.sessionPid}`;
      (sessions.get(id) ?? sessions.set(id, new Set()).get(id))?.add(key);
      (runtimesOfKey.get(key) ?? runtimesOfKey.set(key, new Set()).get(key))?.add(attribution.runtime);
    }
    expect([...sessions.keys()].map((id) => id.split(" ")[0]).sort()).toEqual(["containerd", "docker", "podman"]);
    expect([...runtimesOfKey.values()].every((runtimes) => runtimes.size === 1)).toBe(true);
    const keys = [dockerLeak.shellPid, criLeak.shellPid, podmanLeak.shellPid].map((pid) => slaveKey(pid));
    expect(new Set(keys).size).toBe(3);
  });

  it("never makes a container's init or a runtime monitor a session", () => {
    expect(initPids.size).toBe(4); // Docker's, the CRI sandbox's and container's, Podman's
    const lookup = processFactsLookup(procfs);
    for (const pid of initPids) {
      const facts = readProcessFacts(procfs, pid);
      if (!facts) throw new Error(`init ${pid} vanished`);
      expect(attribute(facts, null, lookup, initPids).role, `init ${pid} (${facts.comm})`).toBe("main");
      // Without the runtimes' record, pid 1 inside still tells it (every init here has its own pid namespace).
      expect(attribute(facts, null, lookup).role, `init ${pid} (${facts.comm}) from /proc alone`).toBe("main");
    }
    for (const { attribution } of attributeOurs()) {
      expect(attribution.sessionPid).not.toBeNull();
      const session = lookup(attribution.sessionPid as number);
      expect(session && monitorOf(session), `session ${attribution.sessionPid}`).toBeNull();
      expect(initPids.has(attribution.sessionPid as number)).toBe(false);
    }
    expect(existsSync(taskBundle(runtimes.containerd, criContainer))).toBe(true);
  });
});
