// A private containerd with the CRI plugin for tests: own root, state, socket and runc root, so it shares nothing
// with Docker's containerd or another test's; the busybox test image is imported from the host's Docker engine.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { DOCKER_BIN, TEST_IMAGE } from "./docker.js";
import { isAlive, sleep, startTicksOf, waitFor } from "./util.js";
import { leftoverRoots, mountsUnder, pidsWithCmdline, runTool as run } from "./private-root.js";
import { HOST_DOCKER_HOST } from "./dockerd.js";

const CONTAINERD = "/usr/bin/containerd";
const CTR = "/usr/bin/ctr";
const ROOT_PREFIX = "/tmp/ptyr-ctd-";
const PROVISION_HINT = "run: sudo bash scripts/provision-test-host.sh";
/** The sandbox image provision-test-host.sh builds: TEST_IMAGE with a CMD that blocks (a sandbox must keep running). */
const PAUSE_IMAGE = "ptyreaper-test/pause:latest";
/** The names `ctr images import` gives them (a docker-save tar names them without a registry). */
export const CRI_TEST_IMAGE = `docker.io/${TEST_IMAGE}`;
export const CRI_PAUSE_IMAGE = `docker.io/${PAUSE_IMAGE}`;
/** The namespace the CRI plugin keeps its containers in. */
export const CRI_NAMESPACE = "k8s.io";

export interface PrivateContainerd {
  readonly root: string;
  /** Its gRPC socket: containerd's own API and CRI's RuntimeService. */
  readonly socket: string;
  /** `state` of the instance: task bundles (`io.containerd.runtime.v2.task/<ns>/<id>/`) and CRI's exec FIFOs live here. */
  readonly stateDir: string;
  readonly pid: number;
  /** Runs `ctr -a <socket> -n <namespace> ...`. */
  ctr(args: readonly string[], namespace?: string): Promise<string>;
  logTail(): string;
  /** Kills every task, removes every container, stops containerd, unmounts and deletes the root. Safe to call twice. */
  destroy(): Promise<void>;
}

function configToml(root: string): string {
  return `version = 2
root = "${root}/root"
state = "${root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${root}/containerd.sock"
[ttrpc]
  address = "${root}/containerd.sock.ttrpc"
[debug]
  address = "${root}/debug.sock"

[plugins."io.containerd.grpc.v1.cri"]
  # The image is imported from the host's Docker engine: no registry is reachable.
  sandbox_image = "${CRI_PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: without this runc's oom_score_adj write fails the sandbox.
  restrict_oom_score_adj = true
  # The exec streaming server, on loopback only.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${root}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "${root}/runc"

[plugins."io.containerd.internal.v1.opt"]
  path = "${root}/opt"
`;
}

async function killPids(pids: readonly number[], what: string): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  await waitFor(() => pids.every((pid) => !isAlive(pid)), 10_000, what).catch(() => undefined);
}

/** Ends what a crashed run on `root` left: its containerd, its shims (their containers die with them), mounts, files. */
async function removeLeftover(root: string): Promise<void> {
  await killPids(pidsWithCmdline([CONTAINERD, `${root}/config.toml`]), `leftover containerd of ${root}`);
  const shims = pidsWithCmdline(["containerd-shim", `${root}/containerd.sock`]);
  // A container's init (and with it its execs) dies with its pid namespace; kill the shims' children first.
  const children = shims.flatMap((shim) => {
    try {
      return readFileSync(`/proc/${shim}/task/${shim}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  await killPids(children, `containers of ${root}`);
  await killPids(shims, `shims of ${root}`);
  for (const point of mountsUnder(root)) await run("umount", ["-l", point]).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
}

/**
 * Starts containerd on /tmp/ptyr-ctd-<tag>-<pid> with the CRI plugin, and imports the busybox test image
 * and the sandbox image into namespace k8s.io. Leftovers of crashed runs of the same tag go first.
 */
export async function startPrivateContainerd(tag: string): Promise<PrivateContainerd> {
  if (!/^[a-z0-9-]{1,12}$/.test(tag)) throw new Error(`startPrivateContainerd: tag ${tag} must be short [a-z0-9-]`);
  for (const path of [CONTAINERD, CTR, "/usr/sbin/runc", DOCKER_BIN]) {
    if (!existsSync(path)) throw new Error(`${path} missing; ${PROVISION_HINT}`);
  }
  for (const stale of leftoverRoots(ROOT_PREFIX, tag)) await removeLeftover(stale);

  const root = `${ROOT_PREFIX}${tag}-${process.pid}`;
  const socket = `${root}/containerd.sock`;
  const logPath = `${root}/containerd.log`;
  mkdirSync(`${root}/cni`, { recursive: true });
  writeFileSync(`${root}/config.toml`, configToml(root));
  writeFileSync(`${root}/owner`, `${process.pid} ${startTicksOf(process.pid) ?? 0}\n`);

  const log = openSync(logPath, "a");
  const child: ChildProcess = spawn(CONTAINERD, ["--config", `${root}/config.toml`], { stdio: ["ignore", log, log] });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not spawn containerd");

  const logTail = (): string => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "(no containerd log)";
    }
  };
  const ctr = (args: readonly string[], namespace = CRI_NAMESPACE): Promise<string> => run(CTR, ["-a", socket, "-n", namespace, ...args]);

  let destroyed = false;
  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    const problems: string[] = [];
    if (child.exitCode === null && child.signalCode === null) {
      try {
        // What the test did not stop itself: kill every task (init kills its execs with the pid namespace).
        for (const line of (await ctr(["tasks", "ls", "-q"])).split("\n").filter(Boolean)) {
          await ctr(["tasks", "kill", "-a", "-s", "SIGKILL", line]).catch(() => undefined);
        }
        await waitFor(async () => !/RUNNING|PAUSED/.test(await ctr(["tasks", "ls"])), 20_000, "tasks to stop").catch(() => undefined);
        for (const line of (await ctr(["tasks", "ls", "-q"])).split("\n").filter(Boolean))
          await ctr(["tasks", "rm", "-f", line]).catch(() => undefined);
      } catch (err) {
        problems.push(`stopping tasks: ${(err as Error).message}`);
      }
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]))) {
        child.kill("SIGKILL");
        await exited;
      }
    }
    await removeLeftover(root).catch((err: unknown) => problems.push(`removing ${root}: ${(err as Error).message}`));
    if (problems.length > 0) throw new Error(`private containerd ${root}: ${problems.join("; ")}`);
  };

  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`containerd exited during start-up:\n${logTail()}`);
        return (
          existsSync(socket) &&
          (await ctr(["version"]).then(
            () => true,
            () => false,
          ))
        );
      },
      60_000,
      `private containerd on ${socket}`,
      100,
    );
    // `docker save | ctr images import -`, the only way in here: no registry is reachable.
    await new Promise<void>((resolve, reject) => {
      const save = spawn(DOCKER_BIN, ["save", TEST_IMAGE, PAUSE_IMAGE], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, DOCKER_HOST: HOST_DOCKER_HOST },
      });
      const load = spawn(CTR, ["-a", socket, "-n", CRI_NAMESPACE, "images", "import", "-"], { stdio: ["pipe", "ignore", "pipe"] });
      save.stdout.pipe(load.stdin);
      let errors = "";
      save.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
      load.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
      const closed = (child: ChildProcess): Promise<number | null> => new Promise((done) => child.once("close", (code: number | null) => done(code)));
      void Promise.all([closed(save), closed(load)]).then(([saved, loaded]) =>
        saved === 0 && loaded === 0
          ? resolve()
          : reject(
              new Error(
                `docker save ${TEST_IMAGE} ${PAUSE_IMAGE} | ctr images import failed (${saved}, ${loaded}): ${errors.trim()}; ${PROVISION_HINT}`,
              ),
            ),
      );
    });
    const images = (await ctr(["images", "ls", "-q"])).split("\n");
    for (const image of [CRI_TEST_IMAGE, CRI_PAUSE_IMAGE]) if (!images.includes(image)) throw new Error(`${image} missing after import`);
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  return { root, socket, stateDir: `${root}/state`, pid, ctr, logTail, destroy };
}
