// The container image run as deploy/kubernetes/daemonset.yaml runs it (docker run flags derived from the manifest:
// the host's PID and network namespaces, its mounts, capabilities, user, read-only root; the ConfigMap and a
// test-made Secret as files where the pod has them) against a private containerd with the CRI plugin: a
// SIGKILLed CRI exec client's session is reaped as `orphaned`, an attached one is left alone, and every path of
// the listener asks for TLS and a password while the probes' loopback listener does not. The same run from a copy
// without hostNetwork settles whether containerd's CRI evidence also works from the pod's own network namespace.
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as plainRequest } from "node:http";
import { request, type RequestOptions } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import { parse as parseYaml, parseAllDocuments, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, isAlive, waitFor } from "./support/index.js";
import { BUILD_TIMEOUT_MS, buildImage, freePort, hostDocker, IMAGE, removeLeftoverContainers, runTool } from "./support/container-image.js";
import { startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { CriClient, type KubernetesIdentity } from "./support/cri.js";
import { attachCriExec, type CriAttachedExec } from "./support/cri-exec.js";
import { readMetric } from "./support/daemon.js";
import { dockerRunFromPod } from "./support/docker-run-from-pod.js";
import { runAll } from "./support/private-engine.js";

const DEPLOY = new URL("../../deploy/kubernetes/", import.meta.url);
const POD: KubernetesIdentity = { namespace: "ptyr-test", pod: "k8s-image-pod", podUid: "6b1f0f2e-3c1d-4a8e-9f7a-1d2c3b4a5e6f", container: "shell" };
/** The name the README's certificate is for, which the PodMonitor's serverName checks. */
const CERT_NAME = "ptyreaper";
const SCRAPE_USER = "prometheus";

// The policy this test runs (the shipped ConfigMap's is dry-run with the defaults: orphanGrace 2m, 10 s polls).
const POLL_MS = 2_000;
const ORPHAN_GRACE_MS = 15_000;
const REAPER_GRACE_MS = 2_000;
const HUP_BUDGET_MS = ORPHAN_GRACE_MS + 2 * POLL_MS;
const END_BUDGET_MS = HUP_BUDGET_MS + REAPER_GRACE_MS;

const manifest = <T>(file: string): T => {
  const docs = parseAllDocuments(readFileSync(new URL(file, DEPLOY), "utf8"));
  if (docs.length !== 1) throw new Error(`${file}: expected one object`);
  return docs[0]?.toJS() as T;
};

interface Answer {
  status: number;
  body: string;
}

function get(url: string, options: RequestOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith("https:") ? request : plainRequest;
    const req = send(url, { timeout: 10_000, ...options }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** In-container GET (node is in the image, no shell): how the test reads a listener in the container's own network namespace. */
const IN_CONTAINER_GET = `
const [url, ca, auth, servername] = process.argv.slice(1);
const mod = url.startsWith("https:") ? require("https") : require("http");
const req = mod.request(url, { ca: ca ? require("fs").readFileSync(ca) : undefined, servername: servername || undefined, headers: auth ? { authorization: auth } : {}, timeout: 10000 }, (res) => {
  let body = ""; res.on("data", (c) => (body += c)); res.on("end", () => process.stdout.write(JSON.stringify({ status: res.statusCode, body })));
});
req.on("error", (err) => { process.stdout.write(JSON.stringify({ status: 0, body: String(err) })); });
req.end();`;

interface Variant {
  /** Container name prefix (followed by the test's pid) and private containerd tag. */
  prefix: string;
  tag: string;
  /** The shipped pod spec as is, or a copy without hostNetwork (the pod's own network namespace). */
  hostNetwork: boolean;
}

describe.each<[string, Variant]>([
  ["daemonset.yaml's own pod spec (hostNetwork)", { prefix: "ptyr-test-k8s-reaper-", tag: "k8simg", hostNetwork: true }],
  ["a copy without hostNetwork (the pod's own network namespace)", { prefix: "ptyr-test-k8s-podnet-", tag: "k8spodnet", hostNetwork: false }],
])("the image run from %s, against a private containerd (CRI)", (_label, variant) => {
  const REAPER_CONTAINER = `${variant.prefix}${process.pid}`;
  let dir = "";
  let containerd: PrivateContainerd | null = null;
  let cri: CriClient | null = null;
  let sandboxId = "";
  let containerId = "";
  const attached: CriAttachedExec[] = [];
  let ca: Buffer = Buffer.alloc(0);
  let password = "";
  let metricsUrl = "";
  let healthUrl = "";
  let substituted: string[] = [];

  const logs = async (): Promise<Record<string, unknown>[]> =>
    (await hostDocker(["logs", REAPER_CONTAINER]))
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const logTail = async (): Promise<string> =>
    (await hostDocker(["logs", "--tail", "30", REAPER_CONTAINER]).catch((err: unknown) => String(err))).slice(-6000);
  // What Prometheus sends: the Secret's CA, the certificate's name (the target is an address), the password.
  const scrape = async (path: string, credentials = `${SCRAPE_USER}:${password}`): Promise<Answer> => {
    const auth = credentials ? `Basic ${Buffer.from(credentials).toString("base64")}` : "";
    if (variant.hostNetwork) return get(`${metricsUrl}${path}`, { ca, servername: CERT_NAME, headers: auth ? { authorization: auth } : {} });
    // Its own network namespace: nothing on this host's loopback reaches it, so ask from inside.
    const out = await hostDocker([
      "exec",
      REAPER_CONTAINER,
      "node",
      "-e",
      IN_CONTAINER_GET,
      `${metricsUrl}${path}`,
      "/etc/ptyreaper-web/tls.crt",
      auth,
      CERT_NAME,
    ]);
    return JSON.parse(out) as Answer;
  };
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number | null> => {
    const answer = await scrape("/metrics");
    if (answer.status !== 200) throw new Error(`/metrics: HTTP ${answer.status} ${answer.body}`);
    return readMetric(answer.body, name, labels);
  };

  beforeAll(async () => {
    await buildImage();
    await removeLeftoverContainers(variant.prefix);
    dir = mkdtempSync(join(tmpdir(), "ptyreaper-k8s-image-"));

    containerd = await startPrivateContainerd(variant.tag);
    cri = new CriClient(containerd.socket);
    const sandbox = await cri.runPodSandbox(POD);
    sandboxId = sandbox.id;
    containerId = await cri.createContainer(sandbox, POD, "docker.io/ptyreaper-test/busybox:latest", ["sleep", "1000000"]);
    await cri.startContainer(containerId);

    // The Secret ptyreaper-web, made as the README's quick start makes it (the hash by the image's hash-password).
    const secretDir = join(dir, "secret");
    mkdirSync(secretDir);
    await runTool(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        `/CN=${CERT_NAME}`,
        "-addext",
        `subjectAltName=DNS:${CERT_NAME}`,
        "-keyout",
        join(secretDir, "tls.key"),
        "-out",
        join(secretDir, "tls.crt"),
      ],
      process.env,
      60_000,
    );
    ca = readFileSync(join(secretDir, "tls.crt"));
    password = `pw-${process.pid}-${Date.now()}`;
    const hash = (
      await runTool(
        "bash",
        ["-c", `printf %s "$PW" | /usr/bin/docker run --rm -i --network none ${IMAGE} hash-password`],
        { ...process.env, PW: password, DOCKER_HOST: "unix:///var/run/docker.sock" },
        60_000,
      )
    ).trim();
    expect(hash).toMatch(/^\$2[aby]\$10\$/);
    writeFileSync(
      join(secretDir, "web-config.yml"),
      `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  ${SCRAPE_USER}: ${hash}\n`,
    );

    // The ConfigMap's config, with only what this test must change: the policy and mode (so that a reap happens
    // within the test), and the two listen addresses (this machine is shared: loopback, on free ports; with
    // hostNetwork they are this host's ports). procRoot, webConfigFile, the runtimes and /sessions off stay as shipped.
    const configMap = manifest<IConfigMap>("configmap.yaml");
    const shipped = parseYaml(configMap.data?.["config.yaml"] ?? "") as Record<string, Record<string, unknown>>;
    const [port, healthPort] = [await freePort(), await freePort()];
    const config = {
      ...shipped,
      listen: `127.0.0.1:${port}`,
      http: { ...shipped.http, healthListen: `127.0.0.1:${healthPort}` },
      pollInterval: `${POLL_MS / 1000}s`,
      policy: { idleTimeout: "4h", orphanGrace: `${ORPHAN_GRACE_MS / 1000}s`, minAge: "5s" },
      reaper: { ...shipped.reaper, mode: "enforce", grace: `${REAPER_GRACE_MS / 1000}s` },
    };
    const configDir = join(dir, "configmap");
    mkdirSync(configDir);
    writeFileSync(join(configDir, "config.yaml"), stringify(config));
    metricsUrl = `https://127.0.0.1:${port}`;
    healthUrl = `http://127.0.0.1:${healthPort}`;

    const noPodman = join(dir, "no-podman");
    mkdirSync(noPodman);
    const stateDir = join(dir, "state");
    mkdirSync(stateDir, { mode: 0o700 });
    const pod = manifest<{ spec: { template: { spec: IPodSpec } } }>("daemonset.yaml").spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    if (!variant.hostNetwork) pod.hostNetwork = false;
    const run = dockerRunFromPod(pod, {
      configMaps: { [configMap.metadata?.name ?? ""]: configDir },
      secrets: { "ptyreaper-web": secretDir },
      hostPathSubstitutes: {
        // The node's containerd directory, /run/containerd, is this test's private containerd's: its socket is
        // <root>/containerd.sock, so ptyreaper finds it at the ConfigMap's /run/containerd/containerd.sock.
        "/run/containerd": containerd.root,
        // No Podman in this test: an empty directory, as DirectoryOrCreate leaves on a node without it (enabled: auto skips it).
        "/run/podman": noPodman,
        // The node's state directory: this test's own, so the host's /var/lib/ptyreaper is never written.
        "/var/lib/ptyreaper": stateDir,
      },
    });
    substituted = run.substituted;
    console.log(`docker run ${run.options.join(" ")} ${IMAGE} ${run.args.join(" ")}`);
    await hostDocker(["run", "-d", "--name", REAPER_CONTAINER, ...run.options, IMAGE, ...run.args]);
    try {
      const ready = async (): Promise<boolean> =>
        variant.hostNetwork
          ? (await get(`${healthUrl}/readyz`).catch(() => null))?.status === 200
          : (
              JSON.parse(
                await hostDocker(["exec", REAPER_CONTAINER, "node", "-e", IN_CONTAINER_GET, `${healthUrl}/readyz`]).catch(() => "{}"),
              ) as Partial<Answer>
            ).status === 200;
      await waitFor(ready, 60_000, "the container's /readyz on the health listener");
    } catch (err) {
      throw new Error(`${(err as Error).message}; container log:\n${await logTail()}`, { cause: err });
    }
  }, BUILD_TIMEOUT_MS * 2);

  afterAll(async () => {
    await runAll([
      () => hostDocker(["rm", "-f", REAPER_CONTAINER]).catch(() => undefined),
      ...attached.map((session) => () => session.killClient()),
      async () => {
        if (sandboxId) {
          await cri?.stopPodSandbox(sandboxId);
          await cri?.removePodSandbox(sandboxId);
        }
      },
      () => Promise.resolve(cri?.close()),
      async () => containerd?.destroy(),
      cleanupAll,
      () => Promise.resolve(dir && rmSync(dir, { recursive: true, force: true })),
    ]);
  }, 180_000);

  // Only the shipped pod spec has the exposure to check; the copy without hostNetwork registers no such test
  // (a skipped one would fail the run: nothing is skipped here).
  if (variant.hostNetwork)
    it("answers nothing without the password on the node-wide listener, and only health on the loopback one", async () => {
      expect(substituted).toEqual([
        `/run/containerd → ${containerd?.root} (mounted at /run/containerd)`,
        `/run/podman → ${join(dir, "no-podman")} (mounted at /run/podman)`,
        `/var/lib/ptyreaper → ${join(dir, "state")} (mounted at /var/lib/ptyreaper)`,
      ]);
      for (const path of ["/metrics", "/healthz", "/readyz", "/sessions", "/"]) {
        expect((await scrape(path, "")).status, `${path} without credentials`).toBe(401);
        expect((await scrape(path, `${SCRAPE_USER}:wrong`)).status, `${path} with a wrong password`).toBe(401);
      }
      expect((await scrape("/metrics")).status).toBe(200);
      // Off in the shipped ConfigMap, even with the password.
      expect((await scrape("/sessions")).status).toBe(404);
      expect((await get(`${healthUrl}/healthz`)).status).toBe(200);
      expect((await get(`${healthUrl}/metrics`)).status).toBe(404);
    });

  it("sees CRI clients and reaps a SIGKILLed client's session as orphaned; the attached one stays", async () => {
    if (!containerd || !cri) throw new Error("beforeAll did not start containerd");
    const killed = await attachCriExec(cri, containerd, containerId);
    attached.push(killed);
    const idle = await attachCriExec(cri, containerd, containerId);
    attached.push(idle);
    try {
      await waitFor(
        async () => (await metric("ptyreaper_exec_clients", { client: "attached", runtime: "containerd" })) === 2,
        60_000,
        "both CRI clients attached",
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; container log:\n${await logTail()}`, { cause: err });
    }
    expect(await metric("ptyreaper_client_evidence_available", { runtime: "containerd" })).toBe(1);
    expect(await metric("ptyreaper_runtime_up", { runtime: "containerd" })).toBe(1);

    await killed.killClient();
    const killedAt = Date.now();
    expect(isAlive(killed.shellPid)).toBe(true);

    const hupOf = (lines: Record<string, unknown>[]) =>
      lines.find((l) => String(l.msg).startsWith("signalled exec session") && l.execId === killed.execId && l.signal === "SIGHUP");
    const hup = await waitFor(async () => hupOf(await logs()), HUP_BUDGET_MS + 60_000, "the orphaned session to be signalled", 250).catch(
      async (err: unknown) => {
        throw new Error(`${(err as Error).message}; container log:\n${await logTail()}`);
      },
    );
    const hupAfterMs = Date.parse(String(hup.time)) - killedAt;
    await waitFor(() => !isAlive(killed.shellPid), 30_000, `the orphaned shell ${killed.shellPid} to end`, 100);
    const endedAfterMs = Date.now() - killedAt;
    console.log(
      `CRI exec ${killed.execId.slice(0, 12)}: SIGHUP ${hupAfterMs} ms after its client was killed (orphanGrace + 2 intervals: ${HUP_BUDGET_MS} ms); ` +
        `shell seen ended ${endedAfterMs} ms after (budget, with reaper.grace: ${END_BUDGET_MS} ms)`,
    );
    // The budget: seen gone within an interval of the kill, signalled within one more after the grace, ended within reaper.grace.
    expect(hupAfterMs).toBeLessThanOrEqual(END_BUDGET_MS);
    expect(endedAfterMs).toBeLessThanOrEqual(END_BUDGET_MS);

    // Reaped once its pty leaves the inventory: a shim frees an exec's pty only tens of seconds after it ends.
    const reaped = await waitFor(
      async () => (await logs()).find((l) => l.msg === "reaped exec session" && l.execId === killed.execId),
      90_000,
      "the reap to be logged",
      500,
    );
    expect(reaped).toMatchObject({ reason: "orphaned", result: "reaped" });
    expect(await metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(1);
    expect(await metric("ptyreaper_reap_failures_total")).toBe(0);

    // The attached one, idle longer than the grace by now, is untouched and still attached.
    expect(isAlive(idle.shellPid)).toBe(true);
    expect(await metric("ptyreaper_exec_clients", { client: "attached", runtime: "containerd" })).toBe(1);
    expect(await metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);
    expect((await logs()).filter((l) => l.msg === "reaped exec session").map((l) => l.execId)).toEqual([killed.execId]);
  }, 240_000);
});
