// The lifecycle a runtimes-* test file shares: a private containerd (CRI) and a private Podman for the whole file,
// the pods it runs on them, daemons watching them, and their teardown. The twin of usePrivateEngine (a private
// dockerd), which it brings along for a file that wants Docker too.
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";
import { cleanupAll } from "./index.js";
import { StopWaiting, waitFor } from "./util.js";
import { CRI_NAMESPACE, CRI_TEST_IMAGE, startPrivateContainerd, type PrivateContainerd } from "./containerd.js";
import { CriClient, type KubernetesIdentity } from "./cri.js";
import type { RunningDaemon } from "./daemon.js";
import { startPrivatePodman, type PrivatePodman } from "./podman.js";
import { runAll, trackDaemons, usePrivateEngine } from "./private-engine.js";

export interface PrivateRuntimesOptions {
  /** Starts Podman's REST service, which ptyreaper watches Podman through (the default); a test of /proc alone needs none. */
  podmanService?: boolean;
  /** A private dockerd too (usePrivateEngine, tagged `tag`): daemons then run with DOCKER_HOST on it. */
  dockerd?: { tag: string };
  /** The file's own teardown (sessions it attached): after the daemons stop, before the pods and runtimes go. */
  cleanup?: () => Promise<void>;
  /** Timeout of the teardown hook. */
  teardownTimeoutMs?: number;
}

/** A pod sandbox and its one container, which sleeps. */
export interface RuntimePod {
  readonly sandbox: { id: string; config: object };
  readonly containerId: string;
}

export interface PrivateRuntimesTestbed {
  /** The running runtimes and a CRI client of containerd; there from beforeAll on. */
  readonly containerd: PrivateContainerd;
  readonly cri: CriClient;
  readonly podman: PrivatePodman;
  /** A config's `runtimes:` section that watches both: containerd's k8s.io namespace, and Podman through its service. */
  readonly runtimesYaml: string;
  /** The daemon startDaemon started last. */
  readonly daemon: RunningDaemon;
  /** Runs a sandbox for `pod` (under `cgroupParent`, if given) with a sleeping container; teardown removes the sandbox. */
  runPod(pod: KubernetesIdentity, cgroupParent?: string): Promise<RuntimePod>;
  /** Starts `ptyreaper run` (with DOCKER_HOST on the private dockerd, if there is one); teardown stops it. */
  startDaemon(yaml: string, extraArgs?: string[], env?: Record<string, string>): Promise<RunningDaemon>;
}

/**
 * Registers the hooks: beforeAll starts a private containerd and a private Podman, both tagged `tag`; teardown
 * stops the daemons, runs `cleanup`, removes the pods, destroys both runtimes (and the pods' cgroups), and runs
 * cleanupAll. Every teardown step runs even when one before it fails, so no runtime outlives the file.
 */
export function usePrivateRuntimes(tag: string, options: PrivateRuntimesOptions = {}): PrivateRuntimesTestbed {
  const { podmanService = true, dockerd, cleanup, teardownTimeoutMs = 120_000 } = options;
  let containerd: PrivateContainerd | null = null;
  let cri: CriClient | null = null;
  let podman: PrivatePodman | null = null;
  let daemon: RunningDaemon | null = null;
  const sandboxes: RuntimePod["sandbox"][] = [];
  const cgroupParents: string[] = [];

  const fileCleanup = cleanup ? [cleanup] : [];
  // The pods go through CRI, so while containerd still runs; destroy() then ends whatever else is left on each runtime.
  const runtimesTeardown = (): (() => Promise<unknown>)[] => [
    ...sandboxes.splice(0).map((sandbox) => async () => {
      await cri?.stopPodSandbox(sandbox.id);
      await cri?.removePodSandbox(sandbox.id);
    }),
    () => Promise.resolve(cri?.close()),
    async () => containerd?.destroy(),
    async () => podman?.destroy(),
    // The pods' cgroup levels are ours (no kubelet here): remove the directories, empty once containerd is gone.
    // A level stays busy (EBUSY) until the kernel has finished taking the last killed process out of it.
    ...cgroupParents.splice(0).map((parent) => async () => {
      for (const dir of cgroupDirsOf(parent)) await removeCgroupDir(dir);
    }),
  ];

  let start: PrivateRuntimesTestbed["startDaemon"];
  if (dockerd) {
    // The engine's teardown stops the daemons first and ends with cleanupAll and the engine; the runtimes go in between.
    const engine = usePrivateEngine(dockerd.tag, { cleanup: () => runAll([...fileCleanup, ...runtimesTeardown()]), teardownTimeoutMs });
    start = (yaml, extraArgs, env) => engine.startDaemon(yaml, extraArgs, env);
  } else {
    const daemons = trackDaemons();
    start = (yaml, extraArgs, env) => daemons.start(yaml, extraArgs, env);
    afterAll(() => runAll([...daemons.stopSteps(), ...fileCleanup, ...runtimesTeardown(), cleanupAll]), teardownTimeoutMs);
  }

  // After usePrivateEngine's beforeAll, so the dockerd (if any) is up first.
  beforeAll(async () => {
    containerd = await startPrivateContainerd(tag);
    cri = new CriClient(containerd.socket);
    podman = await startPrivatePodman(tag);
    if (podmanService) await podman.startService();
  });

  const running = <T>(what: string, instance: T | null): T => {
    if (instance === null) throw new Error(`${what} "${tag}" is not running: its beforeAll has not run or failed`);
    return instance;
  };

  return {
    get containerd() {
      return running("private containerd", containerd);
    },
    get cri() {
      return running("CRI client of containerd", cri);
    },
    get podman() {
      return running("private podman", podman);
    },
    get runtimesYaml() {
      return `runtimes:
  containerd:
    enabled: true
    socket: ${running("private containerd", containerd).socket}
    namespaces: [${CRI_NAMESPACE}]
  podman:
    enabled: true
    socket: ${running("private podman", podman).socket}
`;
    },
    get daemon() {
      if (!daemon) throw new Error("the daemon did not start (see beforeAll)");
      return daemon;
    },
    async runPod(pod, cgroupParent) {
      const client = running("CRI client of containerd", cri);
      if (cgroupParent) cgroupParents.push(cgroupParent);
      const sandbox = await client.runPodSandbox(pod, cgroupParent);
      sandboxes.push(sandbox);
      const containerId = await client.createContainer(sandbox, pod, CRI_TEST_IMAGE, ["sleep", "1000000"]);
      await client.startContainer(containerId);
      return { sandbox, containerId };
    },
    async startDaemon(yaml, extraArgs, env) {
      daemon = await start(yaml, extraArgs, env);
      return daemon;
    },
  };
}

/** The cgroup directories of each level of `parent` in every hierarchy, deepest first. */
/** rmdir of a cgroup directory, retried while the kernel still reports it busy (its last processes exiting). */
async function removeCgroupDir(dir: string): Promise<void> {
  await waitFor(
    () => {
      try {
        if (existsSync(dir)) rmdirSync(dir);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EBUSY") return false;
        throw new StopWaiting(`cannot remove ${dir}: ${(err as Error).message}`);
      }
    },
    30_000,
    `${dir} to be empty and removed`,
    100,
  );
}

function cgroupDirsOf(parent: string): string[] {
  const parts = parent.split("/").filter(Boolean);
  const hierarchies = readdirSync("/sys/fs/cgroup").filter(
    (h) => existsSync(`/sys/fs/cgroup/${h}/cgroup.procs`) || existsSync(`/sys/fs/cgroup/${h}/tasks`),
  );
  return hierarchies.flatMap((h) => parts.map((_, i) => `/sys/fs/cgroup/${h}/${parts.slice(0, parts.length - i).join("/")}`));
}
