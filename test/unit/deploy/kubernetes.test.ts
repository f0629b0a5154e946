// deploy/kubernetes: every manifest valid against the Kubernetes schemas (kubernetes-models), the two
// Prometheus-operator objects against a strict zod schema of the fields used, and the DaemonSet's privileges,
// probes and mounts agreeing with the config it runs and with the image.
import { readdirSync, readFileSync } from "node:fs";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { IContainer } from "kubernetes-models/v1/Container";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parseConfig } from "../../../src/config/load.js";
import { DAEMON_NODE_FLAGS } from "../../../src/systemd/install.js";

const DIR = new URL("../../../deploy/kubernetes/", import.meta.url);
const read = (name: string): string => readFileSync(new URL(name, DIR), "utf8");
const repoFile = (path: string): string => readFileSync(new URL(`../../../${path}`, import.meta.url), "utf8");

/** The Kubernetes objects of every manifest, with the file each came from. */
const MANIFESTS = readdirSync(DIR)
  .filter((name) => name.endsWith(".yaml") && name !== "kustomization.yaml")
  .sort()
  .flatMap((file) =>
    parseAllDocuments(read(file)).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return { file, object: doc.toJS() as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } };
    }),
  );

const byKind = (kind: string): unknown => {
  const found = MANIFESTS.filter((m) => m.object.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]?.object;
};

/** kubernetes-models validates types, required fields, enums and formats (quantities, ports), as the API server does. */
const BUILT_IN: Record<string, (object: never) => { validate(): void }> = {
  "v1/Namespace": (o) => new Namespace(o),
  "v1/ServiceAccount": (o) => new ServiceAccount(o),
  "v1/ConfigMap": (o) => new ConfigMap(o),
  "apps/v1/DaemonSet": (o) => new DaemonSet(o),
  "networking.k8s.io/v1/NetworkPolicy": (o) => new NetworkPolicy(o),
};

// The Prometheus operator's CRDs are not in kubernetes-models: a strict schema of the fields we use,
// with the types of the operator's CRD (v0.7x). Strict, so a misspelt field fails here instead of being
// dropped by the API server.
const objectMeta = z.strictObject({ name: z.string().min(1), namespace: z.string().min(1), labels: z.record(z.string(), z.string()) });
const labelSelector = z.strictObject({ matchLabels: z.record(z.string(), z.string()) });
const duration = z.string().regex(/^(\d+(ms|s|m|h|d|w|y))+$/);
const secretKeySelector = z.strictObject({ name: z.string().min(1), key: z.string().min(1), optional: z.boolean().optional() });
const podMonitorSchema = z.strictObject({
  apiVersion: z.literal("monitoring.coreos.com/v1"),
  kind: z.literal("PodMonitor"),
  metadata: objectMeta,
  spec: z.strictObject({
    jobLabel: z.string().optional(),
    selector: labelSelector,
    podMetricsEndpoints: z
      .array(
        z.strictObject({
          port: z.string(),
          path: z.string().startsWith("/"),
          interval: duration,
          scheme: z.enum(["http", "https"]).optional(),
          // SafeTLSConfig and BasicAuth of the operator's CRD (the fields used).
          tlsConfig: z
            .strictObject({
              ca: z.strictObject({ secret: secretKeySelector }).optional(),
              serverName: z.string().min(1).optional(),
              insecureSkipVerify: z.boolean().optional(),
            })
            .optional(),
          basicAuth: z.strictObject({ username: secretKeySelector, password: secretKeySelector }).optional(),
        }),
      )
      .min(1),
  }),
});
const ruleSchema = z.strictObject({
  alert: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
  expr: z.string().min(1),
  for: duration.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
const prometheusRuleSchema = z.strictObject({
  apiVersion: z.literal("monitoring.coreos.com/v1"),
  kind: z.literal("PrometheusRule"),
  metadata: objectMeta,
  spec: z.strictObject({
    groups: z.array(z.strictObject({ name: z.string(), interval: duration.optional(), rules: z.array(ruleSchema).min(1) })).min(1),
  }),
});
const CRDS: Record<string, z.ZodType> = {
  "monitoring.coreos.com/v1/PodMonitor": podMonitorSchema,
  "monitoring.coreos.com/v1/PrometheusRule": prometheusRuleSchema,
};

/** The PrometheusRule made from config/alerts.yml; deploy/kubernetes/prometheusrule.yaml is this text. */
function prometheusRuleFromAlerts(alertsYaml: string): string {
  const { groups } = parseYaml(alertsYaml) as { groups: unknown };
  const rule = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name: "ptyreaper", namespace: "ptyreaper", labels: { "app.kubernetes.io/name": "ptyreaper" } },
    spec: { groups },
  };
  return [
    "# Generated from config/alerts.yml by test/unit/deploy/kubernetes.test.ts: do not edit. After changing",
    "# alerts.yml, regenerate with: npx vitest run test/unit/deploy/kubernetes.test.ts -u",
    "# Your Prometheus resource's ruleSelector must match this object's labels (add yours, e.g. release: ...).",
    stringify(rule, { lineWidth: 0 }),
  ].join("\n");
}

function daemonSetContainer(): IContainer {
  const ds = byKind("DaemonSet") as DaemonSet;
  const container = ds.spec?.template.spec?.containers[0];
  if (!container) throw new Error("DaemonSet has no container");
  return container;
}

/** The Secret the operator makes (README "Run in Kubernetes"), its keys, and the name its certificate is for. */
const WEB_SECRET = "ptyreaper-web";
const SECRET_KEYS = ["ca.crt", "password", "tls.crt", "tls.key", "username", "web-config.yml"];
const CERT_NAME = "ptyreaper";

function readmeKubernetesSection(): string {
  const readme = repoFile("README.md");
  const start = readme.indexOf("\n## Run in Kubernetes\n");
  return readme.slice(start, readme.indexOf("\n## ", start + 1));
}

/** The web config the README's printf writes, with %s where the hash goes. */
function readmeWebConfig(): string {
  const printf = /printf '(tls_server_config:[^']*)'/.exec(readmeKubernetesSection());
  if (!printf?.[1]) throw new Error('README "Run in Kubernetes" has no printf of the web config');
  return printf[1].replaceAll("\\n", "\n");
}

describe("deploy/kubernetes manifests", () => {
  it("are all known kinds, valid against the Kubernetes schemas or the operator's fields", () => {
    expect(MANIFESTS.map((m) => `${m.file}: ${m.object.kind}`)).toEqual([
      "configmap.yaml: ConfigMap",
      "daemonset.yaml: DaemonSet",
      "namespace.yaml: Namespace",
      "networkpolicy.yaml: NetworkPolicy",
      "podmonitor.yaml: PodMonitor",
      "prometheusrule.yaml: PrometheusRule",
      "serviceaccount.yaml: ServiceAccount",
    ]);
    for (const { file, object } of MANIFESTS) {
      const key = `${object.apiVersion}/${object.kind}`;
      const model = BUILT_IN[key];
      const crd = CRDS[key];
      if (model) expect(() => model(object as never).validate(), file).not.toThrow();
      else if (crd) expect(crd.safeParse(object).error?.issues ?? [], file).toEqual([]);
      else throw new Error(`${file}: ${key} is neither a built-in kind nor a known CRD`);
      if (object.kind !== "Namespace") expect(object.metadata.namespace, file).toBe("ptyreaper");
    }
  });

  it("the validation does catch a broken manifest (so the test above can fail)", () => {
    const ds = structuredClone(byKind("DaemonSet")) as { spec: { template: { spec: { containers: { ports: { containerPort: unknown }[] }[] } } } };
    const port = ds.spec.template.spec.containers[0]?.ports[0];
    if (port) port.containerPort = "9724";
    expect(() => new DaemonSet(ds as never).validate()).toThrow(/containerPort/);
    const monitor = structuredClone(byKind("PodMonitor")) as { spec: Record<string, unknown> };
    monitor.spec.podMetricEndpoints = monitor.spec.podMetricsEndpoints;
    expect(podMonitorSchema.safeParse(monitor).success).toBe(false);
  });

  it("kustomization.yaml lists every manifest", () => {
    const { resources } = parseYaml(read("kustomization.yaml")) as { resources: string[] };
    expect([...resources].sort()).toEqual([...new Set(MANIFESTS.map((m) => m.file))]);
  });

  it("the DaemonSet runs with the host's PIDs and network, three capabilities, and read-only /proc and runtime socket directories", () => {
    const ds = byKind("DaemonSet") as DaemonSet;
    const pod = ds.spec?.template.spec;
    expect(pod?.hostPID).toBe(true);
    // sock_diag answers for the caller's network namespace: the node's, where the runtimes' clients connect.
    expect(pod?.hostNetwork).toBe(true);
    // ptyreaper resolves no names, so the host-network default (the node's resolv.conf) is left alone.
    expect(pod?.dnsPolicy).toBeUndefined();
    expect(pod?.automountServiceAccountToken).toBe(false);
    const container = daemonSetContainer();
    expect(container.securityContext).toMatchObject({
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["KILL", "SYS_PTRACE", "DAC_READ_SEARCH"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    const volumes = new Map((pod?.volumes ?? []).map((v) => [v.name, v]));
    const mounts = new Map((container.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    // Read-only, all but the state directory, the config's stateDir, from the node's same path (it outlives the pod).
    const config = parseConfig((byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "", "configmap.yaml", {});
    for (const m of mounts.values()) expect(m.readOnly, m.mountPath).toBe(m.mountPath === config.stateDir ? undefined : true);
    expect(volumes.get(mounts.get(config.stateDir)?.name ?? "")?.hostPath).toEqual({ path: config.stateDir, type: "DirectoryOrCreate" });
    expect(volumes.get(mounts.get("/host/proc")?.name ?? "")?.hostPath).toEqual({ path: "/proc", type: "Directory" });
    expect(volumes.get(mounts.get("/run/containerd")?.name ?? "")?.hostPath).toEqual({ path: "/run/containerd", type: "DirectoryOrCreate" });
    expect(volumes.get(mounts.get("/run/podman")?.name ?? "")?.hostPath).toEqual({ path: "/run/podman", type: "DirectoryOrCreate" });
    // No Docker socket: the ConfigMap disables Docker (README "Run in Kubernetes" says how to add it on Docker nodes).
    expect([...mounts.keys()].filter((path) => path.includes("docker"))).toEqual([]);
    expect(volumes.get(mounts.get("/etc/ptyreaper")?.name ?? "")?.configMap?.name).toBe((byKind("ConfigMap") as ConfigMap).metadata?.name);
    expect(volumes.get(mounts.get("/etc/ptyreaper-web")?.name ?? "")?.secret?.secretName).toBe(WEB_SECRET);
    expect([...mounts.keys()].sort()).toEqual([
      "/etc/ptyreaper",
      "/etc/ptyreaper-web",
      "/host/proc",
      "/run/containerd",
      "/run/podman",
      "/var/lib/ptyreaper",
    ]);
  });

  it("starts on a node that lacks a runtime: no hostPath needs a socket or file to exist beforehand", () => {
    const pod = (byKind("DaemonSet") as DaemonSet).spec?.template.spec;
    const hostPaths = (pod?.volumes ?? []).flatMap((v) => (v.hostPath ? [{ name: v.name, ...v.hostPath }] : []));
    expect(hostPaths.map((h) => h.path).sort()).toEqual(["/proc", "/run/containerd", "/run/podman", "/var/lib/ptyreaper"]);
    for (const { name, path, type } of hostPaths) {
      // Socket, File, CharDevice and BlockDevice fail the pod when the path is absent; "" leaves it to the runtime,
      // which may create a directory at a socket's path (Docker does). Only /proc may be required: every node has it.
      if (path === "/proc") expect(type, name).toBe("Directory");
      else expect(type, name).toBe("DirectoryOrCreate");
    }
  });

  it("each runtime's socket in the config lies in a directory mounted from the same path on the host, and is used when present", () => {
    const container = daemonSetContainer();
    const pod = (byKind("DaemonSet") as DaemonSet).spec?.template.spec;
    const hostPathOf = new Map((pod?.volumes ?? []).map((v) => [v.name, v.hostPath?.path]));
    const config = parseConfig((byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "", "configmap.yaml", {});
    // Docker's socket sits directly in /run: it is reached through the host's /proc (PID 1's root), mounted
    // already, so no hostPath can fail the pod or leave a directory where dockerd would put its socket.
    expect(config.docker).toMatchObject({ enabled: "auto", socket: `${config.procRoot}/1/root/run/docker.sock` });
    const procMount = (container.volumeMounts ?? []).find((m) => m.mountPath === config.procRoot);
    expect(hostPathOf.get(procMount?.name ?? "")).toBe("/proc");
    expect(config.runtimes.containerd).toMatchObject({ enabled: "auto", socket: "/run/containerd/containerd.sock", namespaces: ["k8s.io"] });
    expect(config.runtimes.podman).toMatchObject({ enabled: "auto", socket: "/run/podman/podman.sock" });
    for (const socket of [config.runtimes.containerd.socket, config.runtimes.podman.socket]) {
      const mount = (container.volumeMounts ?? []).find((m) => socket.startsWith(`${m.mountPath}/`));
      expect(mount, socket).toBeDefined();
      expect(hostPathOf.get(mount?.name ?? ""), socket).toBe(mount?.mountPath);
    }
  });

  it("probes /readyz and /healthz on the loopback health listener, with no credential in the manifest, and the resources are set", () => {
    const container = daemonSetContainer();
    // The kubelet shares the node's network namespace with this hostNetwork pod: 127.0.0.1 is the pod's loopback.
    expect(container.readinessProbe?.httpGet).toEqual({ host: "127.0.0.1", path: "/readyz", port: "health" });
    expect(container.livenessProbe?.httpGet).toEqual({ host: "127.0.0.1", path: "/healthz", port: "health" });
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect(Object.keys(probe ?? {}).filter((k) => ["exec", "tcpSocket", "grpc"].includes(k))).toEqual([]);
      expect(JSON.stringify(probe)).not.toMatch(/authorization|basic|password|secret/i);
    }
    expect(container.ports).toEqual([
      { name: "metrics", containerPort: 9724, protocol: "TCP" },
      { name: "health", containerPort: 9725, protocol: "TCP" },
    ]);
    const configText = (byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "";
    const config = parseConfig(configText, "configmap.yaml", {});
    expect(config.listen).toEqual({ host: "0.0.0.0", port: 9724 });
    expect(config.http.healthListen).toEqual({ host: "127.0.0.1", port: 9725 });
    expect(config.procRoot).toBe("/host/proc");
    expect(container.args).toEqual(["run", "--config", "/etc/ptyreaper/config.yaml"]);
    expect(container.resources?.requests).toEqual({ cpu: "25m", memory: "128Mi" });
    expect(container.resources?.limits).toEqual({ cpu: "500m", memory: "192Mi" });
  });

  it("the ConfigMap's config is the image's default with the Kubernetes nodes' runtimes in place of Docker, and /sessions off", () => {
    const withoutRuntimes = (text: string): unknown => {
      const { docker: _docker, runtimes: _runtimes, http: _http, webConfigFile: _web, ...rest } = parseYaml(text) as Record<string, unknown>;
      return rest;
    };
    const configMap = (byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "";
    expect(withoutRuntimes(configMap)).toEqual(withoutRuntimes(repoFile("deploy/container/config.yaml")));
    expect(Object.keys(withoutRuntimes(configMap) as object).sort()).toEqual(["listen", "procRoot", "reaper"]);
    // Other tenants' pods, namespaces and exec activity: no pod on the node may read them.
    expect(parseConfig(configMap, "configmap.yaml", {}).http.sessions).toBe(false);
    expect(repoFile("Dockerfile")).toContain("COPY deploy/container/config.yaml /etc/ptyreaper/config.yaml");
    expect(repoFile("Dockerfile")).toContain('CMD ["run", "--config", "/etc/ptyreaper/config.yaml"]');
  });

  it("starts node in the image with the daemon's one list of node flags, as the launcher and npm start do", () => {
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(repoFile("Dockerfile"))?.[1];
    expect(JSON.parse(entrypoint ?? "null")).toEqual(["node", ...DAEMON_NODE_FLAGS, "/opt/ptyreaper/dist/main.js"]);
  });

  it("ships the ConfigMap (and the image's config) in dry-run, as the README's first step says, and the README says how to switch", () => {
    const configMap = parseConfig((byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "", "configmap.yaml", {});
    expect(configMap.reaper.mode).toBe("dry-run");
    expect(parseConfig(repoFile("deploy/container/config.yaml"), "config.yaml", {}).reaper.mode).toBe("dry-run");
    const readme = repoFile("README.md");
    const section = readme.slice(readme.indexOf("\n## Run in Kubernetes\n"), readme.indexOf("\n## ", readme.indexOf("\n## Run in Kubernetes\n") + 1));
    expect(section).toContain(`**It ships in \`${configMap.reaper.mode}\`**: \`kubectl apply -k\` signals nothing anywhere.`);
    expect(section).toContain("set `reaper.mode: enforce` in the ConfigMap");
    expect(section).toContain("kubectl -n ptyreaper rollout restart daemonset/ptyreaper");
    expect(section).not.toMatch(/Start with `reaper\.mode: dry-run`/);
  });

  it("every path of the listener asks for TLS and a password: the web config comes from the Secret, and both scrape configs send its credentials", () => {
    const pod = (byKind("DaemonSet") as DaemonSet).spec?.template.spec;
    const container = daemonSetContainer();
    const config = parseConfig((byKind("ConfigMap") as ConfigMap).data?.["config.yaml"] ?? "", "configmap.yaml", {});
    // The ConfigMap's webConfigFile is an item of the Secret volume, mounted where the config says.
    const webConfigFile = config.webConfigFile ?? "";
    const mount = (container.volumeMounts ?? []).find((m) => webConfigFile.startsWith(`${m.mountPath}/`));
    const volume = (pod?.volumes ?? []).find((v) => v.name === mount?.name);
    expect(volume?.secret?.secretName).toBe(WEB_SECRET);
    // Not optional: no Secret, no pod (rather than a pod that answers without a password).
    expect(volume?.secret?.optional).toBeUndefined();
    expect(volume?.secret?.defaultMode).toBe(0o400);
    const items = new Map((volume?.secret?.items ?? []).map((i) => [i.path, i.key]));
    expect(items.get(webConfigFile.slice(`${mount?.mountPath}/`.length))).toBe("web-config.yml");
    // The plain scrape password stays out of the pod: it holds the hash only.
    expect([...items.values()].sort()).toEqual(["tls.crt", "tls.key", "web-config.yml"]);
    for (const key of items.values()) expect(SECRET_KEYS, key).toContain(key);

    // The web config the README has you write: TLS with the Secret's files, and one bcrypt user.
    const webConfig = parseYaml(readmeWebConfig().replace("%s", "$2b$10$" + "a".repeat(53))) as {
      tls_server_config: Record<string, string>;
      basic_auth_users: Record<string, string>;
    };
    expect(webConfig.tls_server_config).toEqual({ cert_file: "tls.crt", key_file: "tls.key" });
    for (const file of Object.values(webConfig.tls_server_config)) expect(items.has(file), file).toBe(true);
    const user = Object.keys(webConfig.basic_auth_users);
    expect(user).toEqual(["prometheus"]);

    // The operator's scrape: https, the Secret's CA and the certificate's name, its username and password.
    const endpoint = podMonitorSchema.parse(byKind("PodMonitor")).spec.podMetricsEndpoints[0];
    expect(endpoint?.scheme).toBe("https");
    expect(endpoint?.tlsConfig).toEqual({ ca: { secret: { name: WEB_SECRET, key: "ca.crt" } }, serverName: CERT_NAME });
    expect(endpoint?.basicAuth).toEqual({ username: { name: WEB_SECRET, key: "username" }, password: { name: WEB_SECRET, key: "password" } });
    // A Prometheus without the operator: the same, from files.
    const scrape = (parseYaml(repoFile("deploy/prometheus/scrape-config.yml")) as { scrape_configs: Record<string, unknown>[] }).scrape_configs[0];
    expect(scrape?.scheme).toBe("https");
    expect(scrape?.tls_config).toEqual({ ca_file: "/etc/prometheus/ptyreaper/ca.crt", server_name: CERT_NAME });
    expect(scrape?.basic_auth).toEqual({ username: user[0], password_file: "/etc/prometheus/ptyreaper/password" });
    // The annotations agree, for anything that reads them.
    expect((byKind("DaemonSet") as DaemonSet).spec?.template.metadata?.annotations).toMatchObject({
      "prometheus.io/scheme": "https",
      "prometheus.io/port": "9724",
    });
  });

  it("the README's commands make the Secret with every key the DaemonSet and the PodMonitor use, and a certificate for serverName", () => {
    const section = readmeKubernetesSection();
    // The command with its continuation lines joined.
    const create = /kubectl -n ptyreaper create secret generic (\S+) (.*)/.exec(section.replaceAll("\\\n", " "));
    expect(create?.[1]).toBe(WEB_SECRET);
    const keys = [...(create?.[2] ?? "").matchAll(/--from-(?:file|literal)=([\w.-]+)/g)].map((m) => m[1]).sort();
    expect(keys).toEqual([...SECRET_KEYS].sort());
    expect(section).toContain(`--from-literal=username=prometheus`);
    expect(section).toContain(`-subj /CN=${CERT_NAME} -addext subjectAltName=DNS:${CERT_NAME}`);
    expect(section).toContain("hash-password < password");
  });

  it("the NetworkPolicy admits only Prometheus on the metrics port and no egress (and says where it does not apply)", () => {
    const policy = byKind("NetworkPolicy") as NetworkPolicy;
    const podLabels = (byKind("DaemonSet") as DaemonSet).spec?.template.metadata?.labels ?? {};
    expect(podLabels).toMatchObject(policy.spec?.podSelector.matchLabels ?? { none: "" });
    expect(policy.spec?.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(policy.spec?.egress).toEqual([]);
    expect(policy.spec?.ingress?.map((rule) => rule.ports)).toEqual([[{ port: "metrics", protocol: "TCP" }]]);
    expect(read("networkpolicy.yaml")).toMatch(/hostNetwork/);
  });

  it('the PodMonitor scrapes the pods as job="ptyreaper", which the alert rules select', () => {
    const monitor = podMonitorSchema.parse(byKind("PodMonitor"));
    const podLabels = (byKind("DaemonSet") as DaemonSet).spec?.template.metadata?.labels ?? {};
    expect(podLabels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(podLabels[monitor.spec.jobLabel ?? ""]).toBe("ptyreaper");
    expect(monitor.spec.podMetricsEndpoints[0]?.port).toBe("metrics");
    expect(repoFile("config/alerts.yml")).toContain('job="ptyreaper"');
  });

  it("the PrometheusRule holds exactly the groups of config/alerts.yml", async () => {
    const alerts = repoFile("config/alerts.yml");
    await expect(prometheusRuleFromAlerts(alerts)).toMatchFileSnapshot("../../../deploy/kubernetes/prometheusrule.yaml");
    const rule = prometheusRuleSchema.parse(parseYaml(read("prometheusrule.yaml")));
    expect(rule.spec.groups).toEqual((parseYaml(alerts) as { groups: unknown }).groups);
  });
});
