// The policy for sessions of containerd, CRI-O and Podman: exempt by Kubernetes namespace, and reaped only while their runtime answers.
import { describe, expect, it } from "vitest";
import { decide } from "../../../src/domain/policy.js";
import { loadConfig } from "../../../src/config/load.js";
import type { ExecSession } from "../../../src/domain/types.js";
import type { RuntimeName } from "../../../src/domain/attribution.js";

const NOW = 1_800_000_000_000;
const H = 3_600_000;
const policy = { ...loadConfig(null, {}).policy, exemptNamespaces: ["kube-*", "ops"] };
const limits = { allocated: 1, max: 4096, reserve: 1024 };

function session(n: number, runtime: RuntimeName, namespace: string | null): ExecSession {
  return {
    execId: `exec-${n}`,
    containerId: String(n).padEnd(64, "0"),
    containerName: "app",
    containerLabels: {},
    pid: 1000 + n,
    startTicks: 5000,
    pidNs: null,
    nsPid: 7,
    exemptByEnv: false,
    ptyKey: `0:50:${n}`,
    devptsDev: "0:50",
    index: n,
    holderPids: [1000 + n],
    startedAtMs: NOW - 10 * H,
    atimeMs: NOW - 5 * H,
    mtimeMs: NOW - 5 * H,
    command: "sh",
    runtime,
    runtimeNamespace: runtime === "containerd" ? "k8s.io" : null,
    kubernetes: namespace === null ? null : { namespace, pod: "web-0", podUid: null, container: "app" },
  };
}

describe("policy for other runtimes", () => {
  it.each([
    ["kube-system", "exempt", "Kubernetes namespace kube-system matches exemptNamespaces kube-*"],
    ["ops", "exempt", "matches exemptNamespaces ops"],
    ["team-a", "stale", "idle"],
    ["opsx", "stale", "idle"],
  ])("pod namespace %s → %s", (namespace, state, detail) => {
    const [d] = decide({ sessions: [session(1, "containerd", namespace)], limits, answered: () => true }, policy, 20, NOW);
    expect(d?.state).toBe(state);
    expect(d?.detail).toContain(detail);
  });

  it("a session outside Kubernetes is not exempted by exemptNamespaces", () => {
    const [d] = decide({ sessions: [session(1, "podman", null)], limits, answered: () => true }, { ...policy, exemptNamespaces: ["*"] }, 20, NOW);
    expect(d?.state).toBe("stale");
  });

  it("reaps a session only while its own runtime answers, whatever Docker does", () => {
    const up = new Map<string, boolean>([
      ["docker", false],
      ["containerd", true],
      ["podman", false],
    ]);
    const sessions = [session(1, "containerd", "team-a"), session(2, "podman", null), session(3, "docker", null)];
    const ds = decide({ sessions, limits, answered: (runtime) => up.get(runtime) ?? false }, policy, 20, NOW);
    expect(ds.map((d) => d.state)).toEqual(["stale", "idle", "idle"]);
    expect(ds[1]?.detail).toContain("podman data unavailable");
    expect(ds[2]?.detail).toContain("docker data unavailable");
  });

  it("pressure may take a session of an answering runtime while Docker is down", () => {
    const pressed = { allocated: 3000, max: 4096, reserve: 1024 };
    const sessions = [session(1, "containerd", "team-a")];
    const ds = decide({ sessions, limits: pressed, answered: (runtime) => runtime === "containerd" }, { ...policy, idleTimeout: null }, 20, NOW);
    expect(ds[0]).toMatchObject({ state: "stale", reason: "pressure" });
  });
});
