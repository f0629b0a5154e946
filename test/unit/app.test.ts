// createDaemon and the runtimes: a runtime the config requires but whose socket is missing stops start() and run --once.
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { createDaemon } from "../../src/app.js";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";

const MISSING = "/nonexistent/ptyreaper-test/containerd.sock";

function daemonRequiring(enabled: string) {
  const config = parseConfig(
    `docker: {enabled: false}\nlisten: "127.0.0.1:0"\nruntimes:\n  containerd: {enabled: ${enabled}, socket: ${MISSING}}\n  podman: {enabled: false}\n`,
    "test.yaml",
    {},
  );
  return createDaemon({ config, logger: pino({ enabled: false }), version: "test" });
}

describe("createDaemon with runtimes", () => {
  it.each([
    ["start", (d: ReturnType<typeof daemonRequiring>) => d.start()],
    ["run --once", (d: ReturnType<typeof daemonRequiring>) => d.runOnce()],
  ])("%s: enabled: true without a socket is a config error naming the key and the path", async (_name, act) => {
    const daemon = daemonRequiring("true");
    try {
      const failure = await act(daemon).then(
        () => null,
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(ConfigError);
      expect((failure as ConfigError).problems).toEqual([`runtimes.containerd: enabled, but there is no socket at ${MISSING}`]);
    } finally {
      await daemon.stop();
    }
  });

  it("enabled: auto without a socket runs without that runtime", async () => {
    const daemon = daemonRequiring("auto");
    try {
      const snapshot = await daemon.runOnce();
      expect(snapshot).not.toBeNull();
      const text = await daemon.metrics.exposition();
      expect(text.body).not.toContain('ptyreaper_runtime_up{runtime="containerd"}');
      expect(text.body).not.toContain('ptyreaper_runtime_enabled{runtime="containerd"}');
    } finally {
      await daemon.stop();
    }
  });

  it("docker.enabled: auto without Docker's socket: Docker off (runtime_enabled 0), no docker_up to read as down", async () => {
    const config = parseConfig(
      `docker: {enabled: auto, socket: ${MISSING}}\nlisten: "127.0.0.1:0"\nruntimes: {containerd: {enabled: false}, podman: {enabled: false}}\n`,
      "test.yaml",
      {},
    );
    const daemon = createDaemon({ config, logger: pino({ enabled: false }), version: "test" });
    try {
      const snapshot = await daemon.runOnce();
      expect(snapshot?.docker.available).toBe(false);
      const text = (await daemon.metrics.exposition()).body;
      expect(text).toContain('ptyreaper_runtime_enabled{runtime="docker"} 0');
      expect(text).not.toMatch(/^ptyreaper_docker_up /m);
      expect(text).not.toContain('ptyreaper_runtime_up{runtime="docker"}');
    } finally {
      await daemon.stop();
    }
  });
});

describe("createDaemon with http.healthListen", () => {
  it("serves /healthz and /readyz on the probes' loopback listener, apart from the main one, and closes both at stop", async () => {
    const procRoot = new URL("../fixtures/proc/mixed-host", import.meta.url).pathname;
    const config = parseConfig(
      `docker: {enabled: false}\nlisten: "127.0.0.1:0"\nprocRoot: ${procRoot}\nruntimes: {containerd: {enabled: false}, podman: {enabled: false}}\nhttp: {healthListen: "127.0.0.1:0"}\n`,
      "test.yaml",
      {},
    );
    const daemon = createDaemon({ config, logger: pino({ enabled: false }), version: "test" });
    try {
      const main = await daemon.start();
      const address = daemon.healthServer?.server.address();
      if (typeof address !== "object" || address === null) throw new Error("the health listener is not listening");
      expect(address.address).toBe("127.0.0.1");
      const health = `http://127.0.0.1:${address.port}`;
      expect(health).not.toBe(main);
      expect([200, 503]).toContain((await fetch(`${health}/readyz`)).status);
      expect((await fetch(`${health}/healthz`)).status).toBe(200);
      expect((await fetch(`${health}/metrics`)).status).toBe(404);
      expect((await fetch(`${main}/metrics`)).status).toBe(200);
    } finally {
      await daemon.stop();
    }
    expect(daemon.healthServer?.server.listening).toBe(false);
  });
});
