// The real Docker engine for integration tests: the Debian CLI, test containers, and exec inspection over the socket.
import { execFile } from "node:child_process";
import { request } from "node:http";
import { trackContainer, untrackContainer } from "./track.js";

/** The Debian client, which speaks the engine's API version (/usr/local/bin/docker may be a newer CLI). */
export const DOCKER_BIN = "/usr/bin/docker";
/** The image scripts/provision-test-host.sh builds with `docker import` from busybox-static. */
export const TEST_IMAGE = "ptyreaper-test/busybox:latest";
/** Every container the harness creates has a name starting with this. */
export const TEST_PREFIX = "ptyr-test-";

const PROVISION_HINT = "run: sudo bash scripts/provision-test-host.sh";

/** The engine's unix socket: DOCKER_HOST when it is unix://, else /var/run/docker.sock. */
export function dockerSocketPath(): string {
  const host = process.env.DOCKER_HOST;
  return host?.startsWith("unix://") ? host.slice("unix://".length) : "/var/run/docker.sock";
}

/** Options of dockerCli. */
export interface DockerCliOptions {
  /** Written to the client's stdin. */
  input?: string;
  timeoutMs?: number;
}

/** Runs /usr/bin/docker with `args`; resolves with stdout, rejects with the exit status and stderr. */
export function dockerCli(args: readonly string[], opts: DockerCliOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      DOCKER_BIN,
      [...args],
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(`docker ${args.join(" ")} failed (${err.code ?? err.signal ?? "error"}): ${stderr.trim() || err.message}`, { cause: err }),
          );
        } else {
          resolve(stdout);
        }
      },
    );
    child.stdin?.end(opts.input ?? "");
  });
}

/**
 * Throws a clear Error when the engine is unreachable or the test image is missing: integration
 * tests fail on a host without Docker, they never skip.
 */
export async function requireDocker(): Promise<void> {
  try {
    await dockerCli(["version", "--format", "{{.Server.Version}}"], { timeoutMs: 20_000 });
  } catch (err) {
    throw new Error(`Docker engine unreachable through ${DOCKER_BIN} at ${dockerSocketPath()}; ${PROVISION_HINT}. ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    await dockerCli(["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE]);
  } catch (err) {
    throw new Error(`test image ${TEST_IMAGE} missing; ${PROVISION_HINT}. ${(err as Error).message}`, { cause: err });
  }
}

/** What startContainer runs. */
export interface StartContainerOptions {
  /** Suffix of the container name; the full name is `ptyr-test-<name>`. */
  name: string;
  labels?: Record<string, string>;
  /** `docker run -t`: the container's init gets the container's own pty. */
  tty?: boolean;
  /** Command to run; default `sleep 1000000`. */
  cmd?: string[];
}

/** The full container name for a harness name: `ptyr-test-<name>` (unchanged when already prefixed). */
export function testContainerName(name: string): string {
  return name.startsWith(TEST_PREFIX) ? name : `${TEST_PREFIX}${name}`;
}

/**
 * `docker run -d --network none` of the busybox test image; resolves with the container id. A leftover
 * container of the same name (from a crashed run) is removed first.
 */
export async function startContainer(opts: StartContainerOptions): Promise<string> {
  const name = testContainerName(opts.name);
  await dockerCli(["rm", "-f", name]).catch(() => undefined); // "No such container" is the usual case
  const args = ["run", "-d", "--network", "none", "--name", name];
  for (const [key, value] of Object.entries(opts.labels ?? {})) args.push("--label", `${key}=${value}`);
  if (opts.tty) args.push("-t");
  args.push(TEST_IMAGE, ...(opts.cmd ?? ["sleep", "1000000"]));
  trackContainer(name, removeContainersByName);
  return (await dockerCli(args)).trim();
}

async function removeContainersByName(names: string[]): Promise<void> {
  if (names.length === 0) return;
  await dockerCli(["rm", "-f", ...names]).catch(async (err: unknown) => {
    // Tolerate ones already gone; fail for any that is still there.
    const left = await dockerCli(["ps", "-a", "--format", "{{.Names}}"]);
    const still = names.filter((name) => left.split("\n").includes(name));
    if (still.length > 0) throw err;
  });
  for (const name of names) untrackContainer(name);
}

/** Removes every container whose name starts with `prefix` (which must itself start with `ptyr-test-`). */
export async function removeTestContainers(prefix: string = TEST_PREFIX): Promise<string[]> {
  if (!prefix.startsWith(TEST_PREFIX)) throw new Error(`removeTestContainers: prefix ${prefix} does not start with ${TEST_PREFIX}`);
  const out = await dockerCli(["ps", "-a", "--filter", `name=${prefix}`, "--format", "{{.Names}}"]);
  const names = out.split("\n").filter((name) => name.startsWith(prefix));
  await removeContainersByName(names);
  return names;
}

/** `ExecIDs` of a container (running and finished execs that Docker still remembers). */
export async function execIds(container: string): Promise<string[]> {
  const out = await dockerCli(["inspect", "--format", "{{json .ExecIDs}}", container]);
  return (JSON.parse(out) as string[] | null) ?? [];
}

/** Host pid of a container's init process (`State.Pid`). */
export async function containerPid(container: string): Promise<number> {
  return Number((await dockerCli(["inspect", "--format", "{{.State.Pid}}", container])).trim());
}

/** The parts of moby's ExecInspect the tests look at. */
export interface ExecInspect {
  ID: string;
  ContainerID: string;
  Running: boolean;
  ExitCode: number | null;
  /** Host pid of the exec'd process; 0 before it started. */
  Pid: number;
  ProcessConfig: { tty: boolean; entrypoint: string; arguments: string[] | null };
}

/** `GET /exec/{id}/json` over the engine's unix socket (the CLI has no exec inspect command). */
export function inspectExec(id: string): Promise<ExecInspect> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: dockerSocketPath(), path: `/exec/${encodeURIComponent(id)}/json`, method: "GET", timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET /exec/${id}/json: HTTP ${res.statusCode}: ${body.trim()}`));
          return;
        }
        try {
          resolve(JSON.parse(body) as ExecInspect);
        } catch (err) {
          reject(new Error(`GET /exec/${id}/json: bad JSON: ${body.slice(0, 200)}`, { cause: err }));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET /exec/${id}/json: timed out`)));
    req.on("error", reject);
    req.end();
  });
}
