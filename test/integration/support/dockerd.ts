// A private Docker engine for fault and safety tests: a second dockerd of our own (own data root, exec root,
// socket) that a test may kill and restart by pid, so it never touches the host's engine or other tests' sessions.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { DOCKER_BIN, TEST_IMAGE } from "./docker.js";
import { cmdlineOf, isAlive, sleep, startTicksOf, waitFor } from "./util.js";
import { leftoverRoots, mountsUnder, pidsWithCmdline } from "./private-root.js";

/** The host's engine, where the test image is provisioned (scripts/provision-test-host.sh). */
export const HOST_DOCKER_HOST = "unix:///var/run/docker.sock";
const DOCKERD = "/usr/sbin/dockerd";

export interface PrivateDockerd {
  /** Everything it owns lives under this directory. */
  readonly root: string;
  /** Its API socket path, and the same as DOCKER_HOST. */
  readonly socket: string;
  readonly host: string;
  /** Pid of the running dockerd, or null while stopped. */
  readonly pid: number | null;
  /** Starts (or restarts) dockerd on the same data; resolves once /_ping answers. */
  start(): Promise<void>;
  /** Sends `signal` to dockerd (by its pid) and waits until it and its containerd have exited. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** GET /_ping answered "OK". */
  ping(): Promise<boolean>;
  /** Runs /usr/bin/docker against this engine. */
  cli(args: readonly string[], timeoutMs?: number): Promise<string>;
  /** Engine API call over the socket; resolves with the status and parsed JSON body (or null). */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }>;
  /** The last part of dockerd's own log, for failure messages. */
  logTail(): string;
  /** Removes every container, stops dockerd, unmounts and deletes the root. Safe to call twice. */
  destroy(): Promise<void>;
}

/** Runs /usr/bin/docker with DOCKER_HOST=host. */
export function dockerAt(host: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      DOCKER_BIN,
      [...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: "utf8", env: { ...process.env, DOCKER_HOST: host } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`docker -H ${host} ${args.join(" ").slice(0, 200)} failed: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      },
    );
    child.stdin?.end();
  });
}

/** One Engine API request over a unix socket. */
export function engineApi(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        timeout: timeoutMs,
        headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          let json: unknown = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {
            json = text; // /_ping answers plain text
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

function umount(point: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("umount", ["-l", point], (err, _stdout, stderr) => (err ? reject(new Error(`umount ${point}: ${stderr.trim()}`)) : resolve()));
  });
}

/**
 * Starts a dockerd of our own under /tmp/ptyr-dd-<tag>-<pid> with --live-restore (containers survive
 * its restarts), no networking changes, and the test image loaded from the host's engine. The pid in
 * the name keeps two runs of the same test apart; leftovers of crashed runs (their owner gone) with
 * the same tag are destroyed first.
 */
export async function startPrivateDockerd(tag: string, options: PrivateDockerdOptions = {}): Promise<PrivateDockerd> {
  if (!/^[a-z0-9-]{1,20}$/.test(tag)) throw new Error(`startPrivateDockerd: tag ${tag} must be short [a-z0-9-]`);
  if (!existsSync(DOCKERD)) throw new Error(`${DOCKERD} missing: install docker.io (scripts/provision-test-host.sh)`);
  for (const stale of leftoverRoots(ROOT_PREFIX, tag)) {
    await stopLeftoverDockerd(stale);
    if (existsSync(`${stale}/daemon.json`))
      await engineAt(stale)
        .destroy()
        .catch(() => undefined);
    for (const point of mountsUnder(stale)) await umount(point);
    rmSync(stale, { recursive: true, force: true });
  }
  const root = `${ROOT_PREFIX}${tag}-${process.pid}`;
  mkdirSync(root, { recursive: true });
  writeFileSync(`${root}/daemon.json`, "{}\n");
  writeFileSync(`${root}/owner`, `${process.pid} ${startTicksOf(process.pid) ?? 0}\n`);
  const engine = engineAt(root, options);
  try {
    await engine.start();
    await loadTestImage(engine.host);
  } catch (err) {
    await engine.destroy().catch(() => undefined);
    throw err;
  }
  return engine;
}

const ROOT_PREFIX = "/tmp/ptyr-dd-";

/** Options of startPrivateDockerd. */
export interface PrivateDockerdOptions {
  /**
   * Also listen on tcp://127.0.0.1:PORT (plain HTTP, loopback only): a client there is a remote
   * client as far as /proc and sock_diag can tell.
   */
  tcpPort?: number;
}

/** The engine on `root` (made by startPrivateDockerd), not started. */
function engineAt(root: string, options: PrivateDockerdOptions = {}): PrivateDockerd {
  const socket = `${root}/docker.sock`;
  const host = `unix://${socket}`;
  const execRoot = `${root}/exec`;
  const logPath = `${root}/dockerd.log`;
  const args = [
    "--config-file",
    `${root}/daemon.json`,
    "--data-root",
    `${root}/data`,
    "--exec-root",
    execRoot,
    "--pidfile",
    `${root}/dockerd.pid`,
    "--host",
    host,
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--live-restore",
    ...(options.tcpPort === undefined ? [] : ["--host", `tcp://127.0.0.1:${options.tcpPort}`]),
  ];

  let child: ChildProcess | null = null;
  let destroyed = false;

  const ping = async (): Promise<boolean> => {
    try {
      const res = await engineApi(socket, "GET", "/_ping", undefined, 2_000);
      return res.status === 200;
    } catch {
      return false;
    }
  };

  const containerdPid = (): number | null => {
    try {
      const pid = Number(readFileSync(`${execRoot}/containerd/containerd.pid`, "utf8").trim());
      return pid > 0 && isAlive(pid) && cmdlineOf(pid).join(" ").includes(execRoot) ? pid : null;
    } catch {
      return null;
    }
  };

  const logTail = (): string => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "(no dockerd log)";
    }
  };

  const start = async (): Promise<void> => {
    if (child) throw new Error("private dockerd already running");
    const log = openSync(logPath, "a");
    const started = spawn(DOCKERD, args, { stdio: ["ignore", log, log] });
    closeSync(log);
    if (started.pid === undefined) throw new Error("could not spawn dockerd");
    child = started;
    started.once("exit", () => {
      if (child === started) child = null;
    });
    await waitFor(
      async () => {
        if (child !== started) throw new Error(`dockerd exited during start-up:\n${logTail()}`);
        return ping();
      },
      60_000,
      `private dockerd on ${socket}`,
      100,
    );
  };

  const stop = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> => {
    const running = child;
    if (!running || running.pid === undefined) return;
    const containerd = containerdPid();
    const containerdStart = containerd === null ? null : startTicksOf(containerd);
    const exited = new Promise<void>((resolve) => {
      if (running.exitCode !== null || running.signalCode !== null) resolve();
      else running.once("exit", () => resolve());
    });
    running.kill(signal);
    const inTime = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
    if (!inTime) {
      running.kill("SIGKILL");
      await exited;
    }
    // dockerd kills its containerd on exit (and the kernel does on SIGKILL, by PDEATHSIG): wait for it.
    if (containerd !== null) {
      await waitFor(() => !isAlive(containerd) || startTicksOf(containerd) !== containerdStart, 20_000, `containerd ${containerd} to exit`);
    }
  };

  const cli = (cliArgs: readonly string[], timeoutMs?: number): Promise<string> => dockerAt(host, cliArgs, timeoutMs);

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    const problems: string[] = [];
    try {
      if (!child) await start();
      const ids = (await cli(["ps", "-aq"])).split("\n").filter(Boolean);
      if (ids.length > 0) await cli(["rm", "-f", ...ids], 120_000);
    } catch (err) {
      problems.push(`removing containers: ${(err as Error).message}`);
    }
    await stop("SIGTERM");
    // Shims of our containerd outlive it by design; after `rm -f` they exit on their own, soon.
    const shimOf = ["containerd-shim", `${execRoot}/containerd/containerd.sock`];
    await waitFor(() => pidsWithCmdline(shimOf).length === 0, 10_000, "shims to exit").catch(() => undefined);
    for (const pid of pidsWithCmdline(shimOf)) {
      problems.push(`shim ${pid} was still running; killed`);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    for (const point of mountsUnder(root)) {
      try {
        await umount(point);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    // Keep dockerd's own log past the root, for a failure that needs it.
    try {
      writeFileSync(`${root.replace(/-\d+$/, "")}.last.log`, readFileSync(logPath));
    } catch {
      // no log written yet
    }
    rmSync(root, { recursive: true, force: true });
    destroyed = true;
    if (problems.length > 0) throw new Error(`private dockerd ${root}: ${problems.join("; ")}`);
  };

  const engine: PrivateDockerd = {
    root,
    socket,
    host,
    get pid() {
      return child?.pid ?? null;
    },
    start,
    stop,
    ping,
    cli,
    api: (method, path, body) => engineApi(socket, method, path, body),
    logTail,
    destroy,
  };

  return engine;
}

/** A dockerd of ours still running on `root` (by its pid file and command line) from a crashed run: stop it. */
async function stopLeftoverDockerd(root: string): Promise<void> {
  let pid = 0;
  try {
    pid = Number(readFileSync(`${root}/dockerd.pid`, "utf8").trim());
  } catch {
    return; // no pid file: nothing running
  }
  if (pid > 0 && isAlive(pid) && cmdlineOf(pid).join(" ").includes(`--data-root ${root}/data`)) {
    process.kill(pid, "SIGTERM");
    await waitFor(() => !isAlive(pid), 30_000, `leftover dockerd ${pid} to exit`);
  }
}

/** `docker save` from the host's engine piped into `docker load` on `host`. */
async function loadTestImage(host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const save = spawn(DOCKER_BIN, ["save", TEST_IMAGE], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DOCKER_HOST: HOST_DOCKER_HOST },
    });
    const load = spawn(DOCKER_BIN, ["load", "-q"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, DOCKER_HOST: host } });
    let errors = "";
    save.stderr.on("data", (c: Buffer) => (errors += c.toString()));
    load.stderr.on("data", (c: Buffer) => (errors += c.toString()));
    save.stdout.pipe(load.stdin);
    let pending = 2;
    const done = (code: number | null): void => {
      if (code !== 0) reject(new Error(`loading ${TEST_IMAGE} into ${host} failed: ${errors.trim()}`));
      else if (--pending === 0) resolve();
    };
    save.once("exit", done);
    load.once("exit", done);
  });
}

// --- exec sessions on an engine, through the API (what `docker exec -dit` does) -----------------------

export interface DetachedExec {
  execId: string;
  /** Host pid of the exec'd process. */
  pid: number;
}

export interface DetachedExecOptions {
  env?: Record<string, string>;
  /** Allocate a pty (default true): the shim holds the master, the process the slave. */
  tty?: boolean;
}

/**
 * Starts `cmd` in a running container as `docker exec -dit` would: a pty, no client attached. Nobody
 * ever reads its output or writes input, so it is the leak in its purest form.
 */
export async function execDetached(socket: string, container: string, cmd: readonly string[], opts: DetachedExecOptions = {}): Promise<DetachedExec> {
  const tty = opts.tty ?? true;
  const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const created = await engineApi(socket, "POST", `/containers/${encodeURIComponent(container)}/exec`, {
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: tty,
    Env: env,
    Cmd: cmd,
  });
  if (created.status !== 201) throw new Error(`exec create in ${container}: HTTP ${created.status} ${JSON.stringify(created.json)}`);
  const execId = (created.json as { Id: string }).Id;
  const started = await engineApi(socket, "POST", `/exec/${execId}/start`, { Detach: true, Tty: tty });
  if (started.status !== 200) throw new Error(`exec start ${execId}: HTTP ${started.status} ${JSON.stringify(started.json)}`);
  const pid = await waitFor(
    async () => {
      const info = await engineApi(socket, "GET", `/exec/${execId}/json`);
      const exec = info.json as { Running?: boolean; Pid?: number; ExitCode?: number | null };
      if (exec.Running === false && exec.ExitCode !== null && exec.ExitCode !== undefined) throw new Error(`exec ${execId} exited ${exec.ExitCode}`);
      return exec.Running && exec.Pid ? exec.Pid : null;
    },
    30_000,
    `exec ${execId.slice(0, 12)} to run`,
  );
  return { execId, pid };
}

/** Whether the engine still reports the exec as running (false when it is gone or unknown). */
export async function execRunning(socket: string, execId: string): Promise<boolean> {
  const info = await engineApi(socket, "GET", `/exec/${execId}/json`);
  return info.status === 200 && (info.json as { Running?: boolean }).Running === true;
}

// --- processes that record the signals they get ----------------------------------------------------

/**
 * A busybox sh script that appends the name of every catchable signal it gets to /tmp/signals-<tag>
 * inside its container (SIGKILL cannot be caught: check it is still alive instead). Run it as a
 * container's init or as an exec; read the file with readRecordedSignals().
 */
export function signalRecorderCmd(tag: string): string[] {
  if (!/^[a-z0-9-]+$/.test(tag)) throw new Error(`signal recorder tag ${tag} must be [a-z0-9-]`);
  const script = [
    `log=/tmp/signals-${tag}`,
    `echo ready >> $log`,
    `for s in HUP INT QUIT TERM USR1 USR2 ALRM PIPE; do trap "echo $s >> $log" $s; done`,
    // A trap runs only once the foreground command ends, but interrupts a `wait` at once (POSIX): with a
    // foreground `sleep 1`, a TERM that came while sh waited on a sleep the reaper never knew of (started
    // after its HUP) was often still pending at the KILL, 500 ms later, and never written down.
    `while :; do sleep 1 & wait $!; done`,
  ].join("; ");
  return ["sh", "-c", script];
}

/** Signals a recorder noted, read through /proc/PID/root of any process in its container (test only). */
export function readRecordedSignals(anyPidInContainer: number, tag: string): string[] {
  const lines = readFileSync(`/proc/${anyPidInContainer}/root/tmp/signals-${tag}`, "utf8").split("\n").filter(Boolean);
  if (lines[0] !== "ready") throw new Error(`signal recorder ${tag} never started: ${JSON.stringify(lines)}`);
  return lines.slice(1);
}

/** Host pid of a container's init (State.Pid) on the engine at `socket`. */
export async function containerInitPid(socket: string, container: string): Promise<number> {
  const res = await engineApi(socket, "GET", `/containers/${encodeURIComponent(container)}/json`);
  const pid = (res.json as { State?: { Pid?: number } }).State?.Pid ?? 0;
  if (res.status !== 200 || pid <= 0) throw new Error(`container ${container} is not running: HTTP ${res.status}`);
  return pid;
}
