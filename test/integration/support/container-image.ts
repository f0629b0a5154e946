// The container image for the container-image-* tests: built once per test process from the Dockerfile (classic
// builder) on base images made here from Debian packages and this machine's Node, and the host-engine chores
// around it (leftover containers of killed runs, free loopback ports).
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { isAlive } from "./index.js";
import { dockerAt, HOST_DOCKER_HOST } from "./dockerd.js";

const REPO = new URL("../../../", import.meta.url).pathname;
// Tagged by Node version: made once per machine (a few minutes), then reused.
const RUNTIME_BASE = `ptyreaper-local/node:${process.versions.node}-bookworm-slim`;
const BUILD_BASE = `ptyreaper-local/node:${process.versions.node}-bookworm`;
export const IMAGE = "ptyreaper-test/ptyreaper:ci";
export const BUILD_TIMEOUT_MS = 15 * 60_000;

/** The host's engine: where images are built and cached, and where the ptyreaper container runs. */
export const hostDocker = (args: string[], timeoutMs = 60_000): Promise<string> => dockerAt(HOST_DOCKER_HOST, args, timeoutMs);

export function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(" ")} failed: ${stderr.slice(-4000) || err.message}`, { cause: err }));
      else resolve(stdout);
    });
  });
}

let built: Promise<string> | null = null;

/**
 * Builds IMAGE from this tree (once per test process; Docker's layer cache makes a second file's build quick)
 * and resolves with its name.
 */
export function buildImage(): Promise<string> {
  built ??= (async () => {
    const env = { ...process.env, DOCKER_HOST: HOST_DOCKER_HOST, DOCKER_BUILDKIT: "0" };
    await runTool("bash", [`${REPO}scripts/make-local-node-images.sh`, RUNTIME_BASE, BUILD_BASE], env, BUILD_TIMEOUT_MS);
    // --network host: the engine here has no bridge; the builder's npm ci reaches the registry through the host.
    await runTool(
      "/usr/bin/docker",
      [
        "build",
        "--network",
        "host",
        "--build-arg",
        `NODE_BUILD_IMAGE=${BUILD_BASE}`,
        "--build-arg",
        `NODE_RUNTIME_IMAGE=${RUNTIME_BASE}`,
        "-t",
        IMAGE,
        REPO,
      ],
      env,
      BUILD_TIMEOUT_MS,
    );
    return IMAGE;
  })();
  return built;
}

/**
 * Containers named `<prefix><test pid>` on the host's engine: a run killed before its afterAll leaves its
 * container running. Removes those whose test process is gone (never another live run's).
 */
export async function removeLeftoverContainers(prefix: string): Promise<void> {
  const names = (await hostDocker(["ps", "-a", "--filter", `name=${prefix}`, "--format", "{{.Names}}"])).split("\n");
  const leftovers = names.filter((name) => name.startsWith(prefix) && !isAlive(Number(name.slice(prefix.length))));
  if (leftovers.length > 0) await hostDocker(["rm", "-f", ...leftovers]);
}

/** A TCP port free on 127.0.0.1 now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
