// Choosing runtime adapters from the config and the sockets present; opening them without connecting.
import { describe, expect, it } from "vitest";
import { defaultConfig, parseConfig } from "../../../src/config/load.js";
import { chooseDocker, chooseRuntimes, openRuntimes } from "../../../src/runtimes/open.js";

const CONTAINERD = "/run/containerd/containerd.sock";
const PODMAN = "/run/podman/podman.sock";
const present =
  (...paths: string[]) =>
  (path: string) =>
    paths.includes(path);

describe("chooseRuntimes", () => {
  const defaults = defaultConfig().runtimes;

  it("auto: opens what has a socket, skips the rest quietly", () => {
    expect(chooseRuntimes(defaults, present(CONTAINERD))).toEqual({
      chosen: [{ runtime: "containerd", socket: CONTAINERD, required: false }],
      problems: [],
      skipped: [`podman: no socket at ${PODMAN}`],
    });
  });

  it("auto on a Docker-only host: nothing", () => {
    expect(chooseRuntimes(defaults, present()).chosen).toEqual([]);
  });

  it("true: required, and a missing socket is a problem", () => {
    const config = parseConfig("runtimes: {containerd: {enabled: true}, podman: {enabled: true}}", "t", {}).runtimes;
    expect(chooseRuntimes(config, present(PODMAN))).toEqual({
      chosen: [{ runtime: "podman", socket: PODMAN, required: true }],
      problems: [`runtimes.containerd: enabled, but there is no socket at ${CONTAINERD}`],
      skipped: [],
    });
  });

  it("false: never, even with a socket", () => {
    const config = parseConfig("runtimes: {containerd: {enabled: false}, podman: {enabled: false}}", "t", {}).runtimes;
    expect(chooseRuntimes(config, present(CONTAINERD, PODMAN))).toEqual({
      chosen: [],
      problems: [],
      skipped: ["containerd: disabled in the config", "podman: disabled in the config"],
    });
  });
});

describe("chooseDocker", () => {
  const DOCKER = "/var/run/docker.sock";
  it.each<[string, string, string[], { used: boolean; skipped: string | null }]>([
    ["true with its socket", "docker: {enabled: true}", [DOCKER], { used: true, skipped: null }],
    ["true without it: used, and down until the engine comes", "docker: {enabled: true}", [], { used: true, skipped: null }],
    ["auto with its socket", "docker: {enabled: auto}", [DOCKER], { used: true, skipped: null }],
    ["auto without it: not used", "docker: {enabled: auto}", [], { used: false, skipped: `docker: no socket at ${DOCKER}` }],
    [
      "auto looks at the configured socket",
      "docker: {enabled: auto, socket: /run/docker.sock}",
      [DOCKER],
      { used: false, skipped: "docker: no socket at /run/docker.sock" },
    ],
    ["false even with its socket", "docker: {enabled: false}", [DOCKER], { used: false, skipped: "docker: disabled in the config" }],
  ])("%s", (_name, yaml, sockets, want) => {
    expect(chooseDocker(parseConfig(yaml, "t", {}).docker, present(...sockets))).toEqual(want);
  });
});

describe("openRuntimes", () => {
  it("creates one adapter per choice with the configured socket, without connecting", async () => {
    const config = parseConfig(
      "runtimes: {containerd: {socket: /nonexistent/c.sock, namespaces: [k8s.io, ci]}, podman: {socket: /nonexistent/p.sock}}",
      "t",
      {},
    ).runtimes;
    const ports = await openRuntimes(config, [
      { runtime: "containerd", socket: config.containerd.socket, required: false },
      { runtime: "podman", socket: config.podman.socket, required: true },
    ]);
    try {
      expect(ports.map((p) => [p.runtime, p.endpoint])).toEqual([
        ["containerd", "/nonexistent/c.sock"],
        ["podman", "/nonexistent/p.sock"],
      ]);
    } finally {
      for (const port of ports) port.close();
    }
  });
});
