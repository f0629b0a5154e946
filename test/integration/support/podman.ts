// A private Podman for tests (own storage root, run root and tmpdir), its REST service, and the
// `podman exec -it` leak: the client runs under a real tty (script) and is SIGKILLed.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { DOCKER_BIN, TEST_IMAGE } from "./docker.js";
import { killAndWait, trackProcess } from "./track.js";
import { StopWaiting, cmdlineOf, descendantsOf, environOf, isAlive, sleep, startTicksOf, waitFor } from "./util.js";
import { leftoverRoots, mountsUnder, pidsWithCmdline, runTool as run } from "./private-root.js";
import { HOST_DOCKER_HOST, engineApi } from "./dockerd.js";

const PODMAN = "/usr/bin/podman";
const ROOT_PREFIX = "/tmp/ptyr-pm-";
const PROVISION_HINT = "run: sudo bash scripts/provision-test-host.sh";
/** The name `podman load` gives TEST_IMAGE. */
export const PODMAN_TEST_IMAGE = `localhost/${TEST_IMAGE}`;
const SESSION_MARKER = "PTYR_TEST_SESSION";

export interface PrivatePodman {
  readonly root: string;
  /** The REST service's socket (once startService ran). */
  readonly socket: string;
  /** Global flags that point podman at this instance, as root without systemd. */
  readonly flags: readonly string[];
  podman(args: readonly string[], timeoutMs?: number): Promise<string>;
  /** `podman run -d --network none` of the test image; resolves with the container id. */
  runContainer(name: string, cmd?: readonly string[], labels?: Record<string, string>): Promise<string>;
  /** `podman system service --time=0` on `socket`; resolves once /_ping answers. */
  startService(): Promise<void>;
  /** A libpod REST call over the service socket. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }>;
  /** Removes every container, stops the service, unmounts and deletes the root. Safe to call twice. */
  destroy(): Promise<void>;
}

/** Ends what remains on `root`: conmons (their containers' inits first), the service, mounts, files. */
async function removeRemains(root: string): Promise<void> {
  const conmons = pidsWithCmdline(["/usr/bin/conmon", root]);
  const children = conmons.flatMap((pid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  const services = pidsWithCmdline([PODMAN, root, "system", "service"]);
  const doomed = [...children, ...conmons, ...services];
  for (const pid of doomed) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  await waitFor(() => doomed.every((pid) => !isAlive(pid)), 10_000, `processes of ${root} to exit`).catch(() => undefined);
  for (const point of mountsUnder(root)) await run("umount", ["-l", point]).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
}

/** A Podman of our own on /tmp/ptyr-pm-<tag>-<pid>, the test image loaded from the host's Docker engine. */
export async function startPrivatePodman(tag: string): Promise<PrivatePodman> {
  if (!/^[a-z0-9-]{1,12}$/.test(tag)) throw new Error(`startPrivatePodman: tag ${tag} must be short [a-z0-9-]`);
  for (const path of [PODMAN, "/usr/bin/conmon", "/usr/sbin/runc", DOCKER_BIN]) {
    if (!existsSync(path)) throw new Error(`${path} missing; ${PROVISION_HINT}`);
  }
  for (const stale of leftoverRoots(ROOT_PREFIX, tag)) await removeRemains(stale);
  const root = `${ROOT_PREFIX}${tag}-${process.pid}`;
  mkdirSync(`${root}/tmp`, { recursive: true });
  writeFileSync(`${root}/owner`, `${process.pid} ${startTicksOf(process.pid) ?? 0}\n`);
  const socket = `${root}/podman.sock`;
  // As root without systemd: cgroupfs and file events; runc because crun refuses this host's hybrid cgroups.
  const flags = [
    "--root",
    `${root}/storage`,
    "--runroot",
    `${root}/run`,
    "--tmpdir",
    `${root}/tmp`,
    "--storage-driver",
    "overlay",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
    "--runtime",
    "/usr/sbin/runc",
  ];
  const podman = (args: readonly string[], timeoutMs?: number): Promise<string> => run(PODMAN, [...flags, ...args], timeoutMs);
  let service: ChildProcess | null = null;
  let destroyed = false;

  const api = (method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> => engineApi(socket, method, path, body);

  const instance: PrivatePodman = {
    root,
    socket,
    flags,
    podman,
    async runContainer(name, cmd = ["sleep", "1000000"], labels = {}) {
      const labelArgs = Object.entries(labels).flatMap(([key, value]) => ["--label", `${key}=${value}`]);
      // Raising RLIMIT_NOFILE/NPROC above the caller's hard limit is refused here, so keep them low.
      const out = await podman([
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        ...labelArgs,
        PODMAN_TEST_IMAGE,
        ...cmd,
      ]);
      return out.trim();
    },
    async startService() {
      if (service) return;
      const log = openSync(`${root}/service.log`, "a");
      const started = spawn(PODMAN, [...flags, "system", "service", "--time=0", `unix://${socket}`], { stdio: ["ignore", log, log] });
      closeSync(log);
      service = started;
      await waitFor(
        async () => {
          if (started.exitCode !== null || started.signalCode !== null)
            throw new StopWaiting(`podman system service exited: ${readFileSync(`${root}/service.log`, "utf8").slice(-2000)}`);
          return existsSync(socket) && (await api("GET", "/_ping")).status === 200;
        },
        30_000,
        `podman service on ${socket}`,
        100,
      );
    },
    api,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      const problems: string[] = [];
      await podman(["rm", "-f", "-a", "-t", "0"], 120_000).catch((err: unknown) => problems.push((err as Error).message));
      const running = service;
      if (running && running.exitCode === null && running.signalCode === null) {
        const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
        running.kill("SIGTERM");
        if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) running.kill("SIGKILL");
      }
      await removeRemains(root).catch((err: unknown) => problems.push(`removing ${root}: ${(err as Error).message}`));
      if (problems.length > 0) throw new Error(`private podman ${root}: ${problems.join("; ")}`);
    },
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const save = spawn(DOCKER_BIN, ["save", TEST_IMAGE], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, DOCKER_HOST: HOST_DOCKER_HOST },
      });
      const load = spawn(PODMAN, [...flags, "load", "-q"], { stdio: ["pipe", "ignore", "pipe"] });
      save.stdout.pipe(load.stdin);
      let errors = "";
      save.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
      load.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
      const closed = (child: ChildProcess): Promise<number | null> => new Promise((done) => child.once("close", (code: number | null) => done(code)));
      void Promise.all([closed(save), closed(load)]).then(([saved, loaded]) =>
        saved === 0 && loaded === 0
          ? resolve()
          : reject(new Error(`docker save ${TEST_IMAGE} | podman load failed (${saved}, ${loaded}): ${errors.trim()}; ${PROVISION_HINT}`)),
      );
    });
  } catch (err) {
    await instance.destroy().catch(() => undefined);
    throw err;
  }
  return instance;
}

/** The conmon of one exec session, and what its argv and pid file tell. */
export interface ConmonOfExec {
  pid: number;
  /** `-u`: the exec session ID (ExecIDs in container inspect). */
  sessionId: string;
  /** `-p`: the file conmon writes the exec's pid into (`<bundle>/<session>/exec_pid`). */
  pidFile: string;
}

/** Conmons running `--exec-attach` sessions of container `containerId` (full id). */
export function execConmons(containerId: string): ConmonOfExec[] {
  const found: ConmonOfExec[] = [];
  for (const pid of pidsWithCmdline(["/usr/bin/conmon", containerId, "--exec-attach"])) {
    const argv = cmdlineOf(pid);
    const arg = (flag: string): string | undefined => argv[argv.indexOf(flag) + 1];
    if (arg("-c") !== containerId) continue;
    const sessionId = arg("-u");
    const pidFile = arg("-p");
    if (sessionId && pidFile) found.push({ pid, sessionId, pidFile });
  }
  return found;
}

export interface PodmanLeakedExec {
  sessionId: string;
  shellPid: number;
  clientPid: number;
  conmonPid: number;
  /** `/dev/pts/ptmx` fds conmon held while the client was attached. */
  conmonMastersAttached: number;
}

/** Number of `/dev/pts/ptmx` (pty master) fds of `pid`. */
export function ptmxFds(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === "/dev/pts/ptmx") count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A `podman exec -it` whose client is still attached, under script(1). */
export interface PodmanAttachedExec {
  sessionId: string;
  shellPid: number;
  clientPid: number;
  conmonPid: number;
  /** SIGKILLs the podman client by pid, then ends script; resolves once both are gone. */
  killClient(): Promise<void>;
  /** Ends the session from outside: SIGKILLs script and the client (used in teardown). */
  close(): Promise<void>;
}

/**
 * `script -qfc "podman exec -it ... sh"`: resolves once the shell has answered a typed command, with the
 * podman client still attached.
 */
export async function attachPodmanExec(pm: PrivatePodman, containerId: string): Promise<PodmanAttachedExec> {
  const marker = randomUUID();
  const command = `exec ${[PODMAN, ...pm.flags, "exec", "-it", "-e", `${SESSION_MARKER}=${marker}`, containerId, "sh"].map(shellQuote).join(" ")}`;
  const script = spawn("script", ["-qfc", command, "/dev/null"], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, SHELL: "/bin/sh", TERM: "xterm" },
  });
  const scriptPid = script.pid;
  if (scriptPid === undefined) throw new Error("could not start script(1)");
  trackProcess(scriptPid, "script for podman exec", script);
  let output = "";
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString("latin1")).slice(-64 * 1024);
  };
  script.stdout.on("data", collect);
  script.stderr.on("data", collect);
  const failIfExited = (): void => {
    if (script.exitCode !== null || script.signalCode !== null)
      throw new StopWaiting(`script exited (${script.exitCode ?? script.signalCode}); output: ${JSON.stringify(output)}`);
  };
  try {
    const clientPid = await waitFor(
      () => {
        failIfExited();
        return descendantsOf(scriptPid).find((pid) => {
          const argv = cmdlineOf(pid);
          return argv[0] === PODMAN && argv.includes("exec");
        });
      },
      30_000,
      `the podman exec client under script (pid ${scriptPid})`,
    );
    trackProcess(clientPid, "podman exec client");
    const session = await waitFor(
      () => {
        failIfExited();
        for (const conmon of execConmons(containerId)) {
          let pid = 0;
          try {
            pid = Number(readFileSync(conmon.pidFile, "utf8").trim());
          } catch {
            continue; // not written yet
          }
          if (pid > 0 && environOf(pid).includes(`${SESSION_MARKER}=${marker}`)) return { ...conmon, shellPid: pid };
        }
        return null;
      },
      30_000,
      `the exec's conmon and pid file for ${containerId}`,
    );
    trackProcess(session.shellPid, "podman exec shell");
    script.stdin.write("echo ptyr-$((6*7))\r");
    await waitFor(
      () => {
        failIfExited();
        return output.includes("ptyr-42");
      },
      15_000,
      "the exec shell to answer",
    );
    const killClient = async (): Promise<void> => {
      await killAndWait(clientPid);
      await waitFor(() => script.exitCode !== null || script.signalCode !== null, 5_000, "script to exit").catch(() => undefined);
      await killAndWait(scriptPid, script);
    };
    return { sessionId: session.sessionId, shellPid: session.shellPid, clientPid, conmonPid: session.pid, killClient, close: killClient };
  } catch (err) {
    await killAndWait(scriptPid, script);
    throw err;
  }
}

/**
 * An attached `podman exec -it` (attachPodmanExec) whose client is then SIGKILLed by pid. Resolves once the
 * client and script are gone and the shell is seen to live on.
 */
export async function leakPodmanExec(pm: PrivatePodman, containerId: string): Promise<PodmanLeakedExec> {
  const attached = await attachPodmanExec(pm, containerId);
  const conmonMastersAttached = ptmxFds(attached.conmonPid);
  await attached.killClient();
  if (!isAlive(attached.shellPid)) throw new Error(`the exec shell ${attached.shellPid} did not survive its client's SIGKILL`);
  return {
    sessionId: attached.sessionId,
    shellPid: attached.shellPid,
    clientPid: attached.clientPid,
    conmonPid: attached.conmonPid,
    conmonMastersAttached,
  };
}
