// The pod spec → docker run translation the container-image tests use: on the shipped DaemonSet, and on the
// fields it must refuse rather than drop.
import { readFileSync } from "node:fs";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { cpuCores, dockerRunFromPod, memoryBytes, type PodFiles } from "../../integration/support/docker-run-from-pod.js";

const daemonSet = parseYaml(readFileSync(new URL("../../../deploy/kubernetes/daemonset.yaml", import.meta.url), "utf8")) as {
  spec: { template: { spec: IPodSpec } };
};
const shippedPod = (): IPodSpec => structuredClone(daemonSet.spec.template.spec);
const FILES: PodFiles = { configMaps: { "ptyreaper-config": "/tmp/cm" }, secrets: { "ptyreaper-web": "/tmp/web" } };

/** Pairs of `flag value` (and lone flags) in order, easier to read in a failure than a flat list. */
function pairs(options: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < options.length; i++) {
    const option = options[i] ?? "";
    const lone = option.includes("=") || option === "--read-only" || option === "--privileged";
    out.push(lone ? option : `${option} ${options[++i] ?? ""}`);
  }
  return out;
}

describe("dockerRunFromPod", () => {
  it("turns the shipped DaemonSet into the host's pid and network namespaces, its mounts, capabilities, user and limits", () => {
    const run = dockerRunFromPod(shippedPod(), { ...FILES, hostPathSubstitutes: { "/run/containerd": "/tmp/ptyr-ctd-x" } });
    expect(pairs(run.options)).toEqual([
      "--pid=host",
      "--network host",
      "--user 0:0",
      "--read-only",
      "--security-opt no-new-privileges",
      "--cap-drop ALL",
      "--cap-add KILL",
      "--cap-add SYS_PTRACE",
      "--cap-add DAC_READ_SEARCH",
      "-e MALLOC_ARENA_MAX=2",
      `--memory ${192 * 1024 * 1024}b`,
      "--cpus 0.5",
      "-v /proc:/host/proc:ro",
      "-v /tmp/ptyr-ctd-x:/run/containerd:ro",
      "-v /run/podman:/run/podman:ro",
      "-v /var/lib/ptyreaper:/var/lib/ptyreaper",
      "-v /tmp/cm:/etc/ptyreaper:ro",
      "-v /tmp/web:/etc/ptyreaper-web:ro",
    ]);
    expect(run.args).toEqual(["run", "--config", "/etc/ptyreaper/config.yaml"]);
    expect(run.substituted).toEqual(["/run/containerd → /tmp/ptyr-ctd-x (mounted at /run/containerd)"]);
  });

  it("a substitute that matches no mounted hostPath is an error, not a silent no-op", () => {
    expect(() => dockerRunFromPod(shippedPod(), { ...FILES, hostPathSubstitutes: { "/run/k3s/containerd": "/tmp/x" } })).toThrow(
      "hostPath substitutes match no mounted hostPath: /run/k3s/containerd",
    );
  });

  it.each<[string, (pod: IPodSpec) => void, RegExp]>([
    ["a pod field it does not know", (pod) => Object.assign(pod, { hostIPC: true }), /pod spec: no docker run translation for hostIPC/],
    [
      "a security field it does not know",
      (pod) => Object.assign(pod.containers[0]?.securityContext ?? {}, { procMount: "Unmasked" }),
      /securityContext: no docker run translation for procMount/,
    ],
    [
      "an env var from the downward API",
      (pod) => pod.containers[0]?.env?.push({ name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }),
      /env NODE: valueFrom/,
    ],
    [
      "a Secret without files",
      (pod) =>
        pod.volumes?.push({ name: "other", secret: { secretName: "other" } }) &&
        pod.containers[0]?.volumeMounts?.push({ name: "other", mountPath: "/x" }),
      /no files given for Secret other/,
    ],
    ["a second container", (pod) => pod.containers.push({ name: "sidecar" }), /expected one container, got 2/],
  ])("refuses %s", (_what, change, message) => {
    const pod = shippedPod();
    change(pod);
    expect(() => dockerRunFromPod(pod, FILES)).toThrow(message);
  });

  it("a pod in its own namespaces gets none of the host's, and a privileged one --privileged", () => {
    const pod = shippedPod();
    delete pod.hostPID;
    pod.hostNetwork = false;
    const security = pod.containers[0]?.securityContext;
    if (security) security.privileged = true;
    const options = dockerRunFromPod(pod, FILES).options;
    expect(options).not.toContain("--pid=host");
    expect(pairs(options).slice(0, 2)).toEqual(["--network none", "--privileged"]);
  });

  it.each([
    ["192Mi", 192 * 1024 ** 2],
    ["1Gi", 1024 ** 3],
    ["500M", 500e6],
    ["4096", 4096],
  ])("memory %s is %d bytes", (quantity, bytes) => expect(memoryBytes(quantity)).toBe(bytes));

  it.each([
    ["500m", 0.5],
    ["2", 2],
    ["1.5", 1.5],
  ])("cpu %s is %d cores", (quantity, cores) => expect(cpuCores(quantity)).toBe(cores));
});
