// The container image on the real Docker engine: built from the Dockerfile (classic builder) on base images made
// here from Debian packages and this machine's Node, run with the DaemonSet's mounts and capabilities, it reaps
// a leaked `docker exec -it` session of a private engine and leaves an exempt one alone.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { containerPid, isAlive, leakExecSession, startContainer, waitFor, type ExecSessionHandle } from "./support/index.js";
import { BUILD_TIMEOUT_MS, buildImage, freePort, hostDocker, IMAGE, removeLeftoverContainers } from "./support/container-image.js";
import { readMetric } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const REAPER_PREFIX = "ptyr-test-image-reaper-";
const REAPER_CONTAINER = `${REAPER_PREFIX}${process.pid}`;

describe("the container image, run as the DaemonSet runs it", () => {
  const testbed = usePrivateEngine("image");
  let dir = "";
  let port = 0;

  beforeAll(async () => {
    await buildImage();
    await removeLeftoverContainers(REAPER_PREFIX);
    dir = mkdtempSync(join(tmpdir(), "ptyreaper-image-"));
    port = await freePort();
  }, BUILD_TIMEOUT_MS * 2);

  afterAll(async () => {
    // Registered after usePrivateEngine's hooks, so it runs before the engine whose socket it uses goes away.
    await hostDocker(["rm", "-f", REAPER_CONTAINER]).catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("has the native scan addon built for its own Node, runs as uid 0, and holds production dependencies only", async () => {
    const out = await hostDocker([
      "run",
      "--rm",
      "--network",
      "none",
      "--entrypoint",
      "node",
      IMAGE,
      "-e",
      "require('/opt/ptyreaper/build/Release/ptyscan.node'); const fs = require('fs');" +
        "console.log(process.getuid(), fs.existsSync('/opt/ptyreaper/node_modules/typescript'), fs.existsSync('/opt/ptyreaper/node_modules/fastify'))",
    ]);
    expect(out.trim()).toBe("0 false true");
  });

  it("reaps a leaked exec session with only KILL, SYS_PTRACE and DAC_READ_SEARCH, /proc read-only and the socket read-only", async () => {
    const victim = "ptyr-test-image-victim";
    await startContainer({ name: victim });
    const initPid = await containerPid(victim);
    const leaked: ExecSessionHandle = await leakExecSession(victim);
    const exempt: ExecSessionHandle = await leakExecSession(victim, { env: { PTYREAPER_EXEMPT: "1" } });
    const config = join(dir, "config.yaml");
    writeFileSync(
      config,
      [
        `listen: "127.0.0.1:${port}"`,
        "pollInterval: 2s",
        "procRoot: /host/proc",
        "docker: {socket: /var/run/docker.sock}",
        "policy: {idleTimeout: 20s, minAge: 5s}",
        "reaper: {grace: 2s}",
        "",
      ].join("\n"),
    );
    // The DaemonSet's pod with Docker's socket added, as README "Run in Kubernetes" says for Docker nodes; written
    // by hand because the shipped DaemonSet mounts no Docker socket (the containerd test derives its flags from it).
    await hostDocker([
      "run",
      "-d",
      "--name",
      REAPER_CONTAINER,
      "--pid=host",
      "--network",
      "host",
      "--read-only",
      "--cap-drop",
      "ALL",
      "--cap-add",
      "KILL",
      "--cap-add",
      "SYS_PTRACE",
      "--cap-add",
      "DAC_READ_SEARCH",
      "--security-opt",
      "no-new-privileges",
      "-v",
      "/proc:/host/proc:ro",
      "-v",
      `${testbed.engine.socket}:/var/run/docker.sock:ro`,
      "-v",
      `${config}:/etc/ptyreaper/config.yaml:ro`,
      IMAGE,
    ]);
    const metrics = async (): Promise<string> => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      return res.text();
    };
    const logs = (): Promise<string> => hostDocker(["logs", REAPER_CONTAINER]);
    try {
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200,
        60_000,
        "the container's /readyz",
      );
      await waitFor(async () => readMetric(await metrics(), "ptyreaper_reaped_sessions_total", { reason: "idle" }) === 1, 120_000, "one idle reap");
    } catch (err) {
      throw new Error(`${(err as Error).message}; container log:\n${(await logs()).slice(-4000)}`, { cause: err });
    }
    await waitFor(() => !isAlive(leaked.shellPid), 15_000, `leaked shell ${leaked.shellPid} to end`);
    const text = await metrics();
    expect(readMetric(text, "ptyreaper_docker_up")).toBe(1);
    // The image carries every native helper: the native /proc reader and pidfd signalling are in use.
    expect(readMetric(text, "ptyreaper_scan_info", { reader: "native" })).toBe(1);
    expect(readMetric(text, "ptyreaper_signal_info", { method: "pidfd" })).toBe(1);
    expect(readMetric(text, "ptyreaper_reap_failures_total")).toBe(0);
    expect(readMetric(text, "ptyreaper_exec_sessions", { state: "exempt" })).toBe(1);
    expect(isAlive(exempt.shellPid)).toBe(true);
    expect(isAlive(initPid)).toBe(true);
    const reaped = (await logs())
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === "reaped exec session");
    expect(reaped.map((line) => line.execId)).toEqual([leaked.execId]);
    expect(reaped[0]).toMatchObject({ reason: "idle", result: "reaped", container: victim });
  }, 300_000);
});
