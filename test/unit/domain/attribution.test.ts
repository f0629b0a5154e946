// Runtime attribution from /proc facts: every cgroup form, every monitor, and the disagreements that make a pty "unknown".
import { describe, expect, it } from "vitest";
import {
  attribute,
  cgroupContainerId,
  monitorOf,
  namedCgroupContainer,
  parseCgroupIdentity,
  parseCgroupPath,
  type ProcessFacts,
} from "../../../src/domain/attribution.js";

const ID = "169baa59a5771cf17b6a4cc3a919e43156123a30950599d7caf1dc57d0fa07e4";
const OTHER = "6359423c60c1d2e3af70e572e6bb2fb7f6cbcf66b3517c4d5ef48b828a22a210";
const SESSION = "7acca8a602b970e87304a31cab0fefc9c8b3c5283806970d287c86e82935311e";
const UID = "3f2a9c1e-7b4d-4e2a-9f10-5c6d7e8f9a0b";
const UID_ = UID.replace(/-/g, "_");

describe("parseCgroupPath", () => {
  it.each([
    ["systemd Docker", `/system.slice/docker-${ID}.scope`, { runtime: "docker", containerId: ID, podUid: null, monitor: false }],
    ["cgroupfs Docker (this host)", `/docker/${ID}`, { runtime: "docker", containerId: ID, podUid: null, monitor: false }],
    [
      "containerd CRI, systemd",
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { runtime: "containerd", containerId: ID, podUid: UID, monitor: false },
    ],
    ["containerd CRI, no cgroup parent (this host)", `/k8s.io/${ID}`, { runtime: "containerd", containerId: ID, podUid: null, monitor: false }],
    [
      "guaranteed pod, systemd",
      `/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { runtime: "containerd", containerId: ID, podUid: UID, monitor: false },
    ],
    [
      "kubepods cgroupfs: any CRI runtime",
      `/kubepods/burstable/pod${UID}/${ID}`,
      { runtime: "unknown", containerId: ID, podUid: UID, monitor: false },
    ],
    [
      "CRI-O, systemd",
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`,
      { runtime: "cri-o", containerId: ID, podUid: UID, monitor: false },
    ],
    [
      "CRI-O's conmon",
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope`,
      { runtime: "cri-o", containerId: ID, podUid: UID, monitor: true },
    ],
    ["CRI-O, cgroupfs", `/kubepods/besteffort/pod${UID}/crio-${ID}`, { runtime: "cri-o", containerId: ID, podUid: UID, monitor: false }],
    ["Podman, systemd", `/machine.slice/libpod-${ID}.scope`, { runtime: "podman", containerId: ID, podUid: null, monitor: false }],
    ["Podman's conmon, systemd", `/machine.slice/libpod-conmon-${ID}.scope`, { runtime: "podman", containerId: ID, podUid: null, monitor: true }],
    ["Podman, cgroupfs (this host)", `/libpod_parent/libpod-${ID}`, { runtime: "podman", containerId: ID, podUid: null, monitor: false }],
    [
      "Docker nested in a kind node: the innermost container",
      `/docker/${OTHER}/kubepods/besteffort/pod${UID}/${ID}`,
      { runtime: "unknown", containerId: ID, podUid: UID, monitor: false },
    ],
    [
      "sub-cgroup inside a container",
      `/system.slice/docker-${ID}.scope/init.scope`,
      { runtime: "docker", containerId: ID, podUid: null, monitor: false },
    ],
  ])("%s", (_name, path, expected) => {
    expect(parseCgroupPath(path)).toEqual(expected);
  });

  it.each([
    ["the root", "/"],
    ["a host service", "/system.slice/ssh.service"],
    ["podman's conmon cgroup on cgroupfs", "/libpod_parent/conmon"],
    ["a bare id under no known parent", `/some/where/${ID}`],
    ["a short id", `/docker/${ID.slice(0, 12)}`],
    ["upper-case hex", `/docker/${ID.toUpperCase()}`],
    ["a uid-like 32-hex level", "/process_api/5c737a0ec5fbc54ee19e126576ec8d23"],
  ])("names no container: %s", (_name, path) => {
    expect(parseCgroupPath(path)).toBeNull();
  });
});

// An outer container, for the nested cases.
const ID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

describe("cgroupContainerId: the one cgroup parser, as the /proc scan and the inventory use it", () => {
  const v1 = (path: string): string =>
    [`12:pids:${path}`, `11:memory:${path}`, `10:devices:${path}`, `1:name=systemd:${path}`, `0::/`].join("\n") + "\n";

  it.each([
    ["cgroup v1, cgroupfs driver", v1(`/docker/${ID}`), ID],
    ["cgroup v2, cgroupfs driver", `0::/docker/${ID}\n`, ID],
    ["cgroup v2, cgroupfs driver, a sub-cgroup inside the container", `0::/docker/${ID}/init\n`, ID],
    ["cgroup v1, systemd driver", v1(`/system.slice/docker-${ID}.scope`), ID],
    ["cgroup v2, systemd driver", `0::/system.slice/docker-${ID}.scope\n`, ID],
    ["podman, root", `0::/machine.slice/libpod-${ID}.scope\n`, ID],
    ["podman, split cgroups", `0::/machine.slice/libpod-${ID}.scope/container\n`, ID],
    ["podman, cgroupfs manager", `0::/libpod_parent/libpod-${ID}\n`, ID],
    ["podman's conmon (host-side, like the shim)", `0::/machine.slice/libpod-conmon-${ID}.scope\n`, null],
    ["podman, rootless", `0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope\n`, ID],
    [
      "containerd CRI, systemd driver, burstable pod",
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-${ID}.scope\n`,
      ID,
    ],
    [
      "docker runtime under kubelet, systemd driver",
      `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_5f60.slice/docker-${ID}.scope\n`,
      ID,
    ],
    ["CRI-O", `0::/kubepods.slice/kubepods-pod1b2c3d4e_5f60.slice/crio-${ID}.scope\n`, ID],
    ["CRI-O's conmon (host-side, like the shim)", `0::/machine.slice/crio-conmon-${ID}.scope\n`, null],
    ["kubelet cgroupfs driver, burstable pod (v1)", v1(`/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/${ID}`), ID],
    ["kubelet cgroupfs driver, besteffort pod (v2)", `0::/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/${ID}\n`, ID],
    ["kubelet cgroupfs driver, guaranteed pod", `0::/kubepods/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/${ID}\n`, ID],
    ["the id only on a later v1 line", `12:pids:/\n11:memory:/docker/${ID}\n0::/\n`, ID],
    ["docker in docker: the inner container (its process is not the outer one's)", `0::/docker/${ID2}/docker/${ID}\n`, ID],
    ["docker in docker, systemd driver outside", `0::/system.slice/docker-${ID2}.scope/docker/${ID}\n`, ID],
    ["a kind node: the innermost pod container", `0::/docker/${ID2}/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/${ID}\n`, ID],
    ["containerd CRI, no cgroup parent (/k8s.io/<id>)", `0::/k8s.io/${ID}\n`, ID],
    ["containerd CRI, no cgroup parent, cgroup v1", v1(`/k8s.io/${ID}`), ID],
    ["podman, cgroup v1", v1(`/machine.slice/libpod-${ID}.scope`), ID],
    ["CRI-O, cgroupfs", `0::/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/crio-${ID}\n`, ID],
    ["v1 and v2 lines disagree: the v2 line wins", `4:memory:/docker/${ID2}\n0::/system.slice/docker-${ID}.scope\n`, ID],
  ])("finds the container in %s", (_what, text, expected) => {
    expect(cgroupContainerId(text)).toBe(expected);
  });

  it.each([
    ["the root cgroup (v2)", "0::/\n"],
    ["a host login session", "0::/user.slice/user-0.slice/session-1.scope\n"],
    ["systemd's init scope", "0::/init.scope\n"],
    ["the host's own v1 hierarchies", v1("/")],
    ["a sandbox's own cgroup", "4:memory:/process_api/7a461c34c89e8be7ccb656e2fa667016\n0::/\n"],
    ["the docker daemon's service", "0::/system.slice/docker.service\n"],
    ["a short container id", "0::/docker/df631ec3f52d\n"],
    ["an upper-case id", `0::/docker/${ID.toUpperCase()}\n`],
    ["a custom --cgroup-parent (unknown format)", `0::/my-parent/${ID}\n`],
    ["a bare id in a k8s.io sub-path", `0::/k8s.io/${ID}0\n`],
    ["a 65-digit id", `0::/docker/${ID}0\n`],
    ["an empty file", ""],
    ["a line without colons", `/docker/${ID}\n`],
  ])("returns null for %s", (_what, text) => {
    expect(cgroupContainerId(text)).toBeNull();
  });
});

describe("parseCgroupIdentity", () => {
  it("reads cgroup v1 lines (this host: every hierarchy names the container)", () => {
    const text = [
      "9:name=systemd:/libpod_parent/libpod-" + ID,
      "8:pids:/libpod_parent/libpod-" + ID,
      "4:memory:/process_api/5c737a0ec5fbc54ee19e126576ec8d23",
      "",
    ].join("\n");
    expect(parseCgroupIdentity(text)).toMatchObject({ runtime: "podman", containerId: ID });
  });

  it("prefers the cgroup v2 line when lines disagree", () => {
    const text = `4:memory:/docker/${OTHER}\n0::/system.slice/docker-${ID}.scope\n`;
    expect(parseCgroupIdentity(text)?.containerId).toBe(ID);
  });

  it.each([[""], ["garbage"], ["0::/\n"], ["1:cpu\n"]])("returns null for %j", (text) => {
    expect(parseCgroupIdentity(text)).toBeNull();
  });
});

describe("containers named by any string (ctr run … myname), by exact match against the runtime's list", () => {
  const named = new Map([["default", new Set(["myname", ID])]]);

  it.each<[string, string, string | null]>([
    ["ctr run in namespace default", "/default/myname", "myname"],
    ["a hex id in a namespace no pattern knows", `/default/${ID}`, ID],
    ["nested under a parent", "/some/parent/default/myname", "myname"],
    ["a container the runtime did not list", "/default/othername", null],
    ["a listed id in another namespace", "/team/myname", null],
    ["a prefix of a listed id", "/default/myna", null],
    ["a listed id as a prefix", "/default/myname2", null],
    ["a sub-cgroup of the container", "/default/myname/sub", null],
    ["the namespace alone", "/default", null],
    ["the root", "/", null],
  ])("%s", (_name, path, want) => {
    expect(namedCgroupContainer(path, named)).toBe(want);
  });

  it("makes a cgroup text containerd's only when no known form names a container", () => {
    expect(parseCgroupIdentity("4:memory:/default/myname\n", named)).toEqual({
      runtime: "containerd",
      containerId: "myname",
      podUid: null,
      monitor: false,
    });
    expect(parseCgroupIdentity("4:memory:/default/myname\n")).toBeNull();
    expect(parseCgroupIdentity(`4:memory:/default/myname\n0::/system.slice/docker-${OTHER}.scope\n`, named)).toMatchObject({
      runtime: "docker",
      containerId: OTHER,
    });
  });

  it("attributes a ctr exec shell in namespace default to its container", () => {
    const shim = {
      pid: 600,
      ppid: 1,
      comm: "containerd-shim",
      argv: ["/usr/bin/containerd-shim-runc-v2", "-namespace", "default", "-id", "myname"],
      cgroup: "1:cpu:/\n",
      nsPid: 600,
    };
    const shell = inContainer(601, 600, "sh", "/default/myname", 4);
    expect(attribute(shell, shim, tree(shim, shell), new Set([602]), named)).toMatchObject({
      runtime: "containerd",
      containerId: "myname",
      namespace: "default",
      role: "exec",
      sessionPid: 601,
    });
    // Without the list the same process is no container's: shown, never a session.
    expect(attribute(shell, shim, tree(shim, shell), new Set([602])).runtime).toBe("unknown");
  });
});

describe("monitorOf", () => {
  it.each([
    [
      "Docker's shim",
      ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", ID, "-address", "/var/run/docker/containerd/containerd.sock"],
      "containerd-shim",
      { kind: "containerd-shim", runtime: "docker", namespace: "moby", containerId: null, execId: null },
    ],
    [
      "a CRI shim",
      ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", ID, "-address", "/run/containerd/containerd.sock"],
      "containerd-shim",
      { kind: "containerd-shim", runtime: "containerd", namespace: "k8s.io" },
    ],
    [
      "a shim with no namespace flag",
      ["/usr/bin/containerd-shim-runc-v2", "start"],
      "containerd-shim",
      { kind: "containerd-shim", runtime: "unknown", namespace: null },
    ],
    [
      "Podman's exec conmon",
      [
        "/usr/bin/conmon",
        "--api-version",
        "1",
        "-c",
        ID,
        "-u",
        SESSION,
        "-r",
        "/usr/sbin/runc",
        "-t",
        "-i",
        "-e",
        "--exec-attach",
        "--exit-command",
        "/usr/bin/podman",
      ],
      "conmon",
      { kind: "conmon", runtime: "podman", containerId: ID, execId: SESSION },
    ],
    [
      "Podman's container conmon",
      ["/usr/bin/conmon", "--api-version", "1", "-c", ID, "-u", ID, "--exit-command", "/usr/bin/podman"],
      "conmon",
      { kind: "conmon", runtime: "podman", containerId: ID, execId: null },
    ],
    [
      "CRI-O's conmon",
      ["/usr/bin/conmon", "-b", "/run/x", "-c", ID, "--exit-dir", "/var/run/crio/exits", "--socket-dir-path", "/var/run/crio", "-u", ID],
      "conmon",
      { kind: "conmon", runtime: "cri-o", containerId: ID, execId: null },
    ],
    [
      "runc exec for CRI-O",
      ["/usr/bin/runc", "--root", "/run/runc", "exec", "--process", "/tmp/exec-process-123", ID],
      "runc",
      { kind: "oci-runtime-exec", runtime: "unknown", containerId: ID },
    ],
    ["crun exec", ["/usr/bin/crun", "exec", "--process", "/tmp/exec-process-9", ID], "crun", { kind: "oci-runtime-exec", containerId: ID }],
    ["crio", ["/usr/bin/crio"], "crio", { kind: "crio", runtime: "cri-o" }],
  ])("%s", (_name, argv, comm, expected) => {
    expect(monitorOf({ comm, argv })).toMatchObject(expected);
  });

  it.each([
    ["a shell", ["sh"], "sh"],
    ["runc not running exec", ["/usr/bin/runc", "create", ID], "runc"],
    ["sshd", ["sshd: root@pts/0"], "sshd"],
  ])("is null for %s", (_name, argv, comm) => {
    expect(monitorOf({ comm, argv })).toBeNull();
  });
});

/** A process tree as a lookup, from a list of facts. */
function tree(...processes: ProcessFacts[]): (pid: number) => ProcessFacts | undefined {
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  return (pid) => byPid.get(pid);
}

const host = (pid: number, ppid: number, comm: string, argv: string[], cgroup = "0::/\n"): ProcessFacts => ({
  pid,
  ppid,
  comm,
  argv,
  cgroup,
  nsPid: pid,
});
const inContainer = (pid: number, ppid: number, comm: string, cgroupPath: string, nsPid: number): ProcessFacts => ({
  pid,
  ppid,
  comm,
  argv: [comm],
  cgroup: `8:pids:${cgroupPath}\n0::${cgroupPath}\n`,
  nsPid,
});

const dockerShim = host(100, 1, "containerd-shim", [
  "/usr/bin/containerd-shim-runc-v2",
  "-namespace",
  "moby",
  "-id",
  ID,
  "-address",
  "/var/run/docker/containerd/containerd.sock",
]);
const criShim = host(200, 1, "containerd-shim", [
  "/usr/bin/containerd-shim-runc-v2",
  "-namespace",
  "k8s.io",
  "-id",
  ID,
  "-address",
  "/run/containerd/containerd.sock",
]);
const podmanExecConmon = host(300, 1, "conmon", [
  "/usr/bin/conmon",
  "-c",
  ID,
  "-u",
  SESSION,
  "-t",
  "-i",
  "-e",
  "--exec-attach",
  "--exit-command",
  "/usr/bin/podman",
]);
const podmanConmon = host(310, 1, "conmon", ["/usr/bin/conmon", "-c", ID, "-u", ID, "--exit-command", "/usr/bin/podman"]);

describe("attribute", () => {
  const INITS = new Set([103]);

  it("a Docker exec shell: shim namespace moby, cgroup /docker/<id>", () => {
    const shell = inContainer(101, 100, "sh", `/docker/${ID}`, 7);
    expect(attribute(shell, dockerShim, tree(dockerShim, shell), INITS)).toMatchObject({
      runtime: "docker",
      containerId: ID,
      namespace: "moby",
      role: "exec",
      sessionPid: 101,
      podUid: null,
    });
  });

  it("a child of the exec shell belongs to the same session", () => {
    const shell = inContainer(101, 100, "sh", `/docker/${ID}`, 7);
    const top = inContainer(102, 101, "top", `/docker/${ID}`, 8);
    expect(attribute(top, dockerShim, tree(dockerShim, shell, top), INITS)).toMatchObject({ runtime: "docker", role: "exec", sessionPid: 101 });
  });

  it("a container's init (pid 1 inside) is the main process, not an exec, even with no runtime record", () => {
    const init = inContainer(103, 100, "sleep", `/docker/${ID}`, 1);
    expect(attribute(init, dockerShim, tree(dockerShim, init))).toMatchObject({ runtime: "docker", role: "main", sessionPid: 103 });
  });

  it("an init that is not pid 1 inside (shared pod pid namespace, --pid=host) is main by the runtime's record", () => {
    const init = inContainer(104, 100, "nginx", `/docker/${ID}`, 3);
    expect(attribute(init, dockerShim, tree(dockerShim, init), new Set([104]))).toMatchObject({ role: "main" });
  });

  it("without the runtime's record, a shim child that is not pid 1 inside is not called an exec", () => {
    const child = inContainer(105, 100, "sh", `/docker/${ID}`, 3);
    const result = attribute(child, dockerShim, tree(dockerShim, child));
    expect(result).toMatchObject({ runtime: "docker", role: "unknown" });
    expect(result.evidence.join("; ")).toMatch(/no runtime record of the container's init/);
  });

  it("a kubectl exec on containerd: shim namespace k8s.io, pod UID from the kubepods slice", () => {
    const path = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`;
    const shell = inContainer(201, 200, "sh", path, 9);
    expect(attribute(shell, criShim, tree(criShim, shell), new Set([202]))).toMatchObject({
      runtime: "containerd",
      containerId: ID,
      podUid: UID,
      namespace: "k8s.io",
      role: "exec",
    });
  });

  it("containerd on cgroupfs kubepods: the bare id is named by the shim", () => {
    const shell = inContainer(201, 200, "sh", `/kubepods/besteffort/pod${UID}/${ID}`, 9);
    expect(attribute(shell, criShim, tree(criShim, shell))).toMatchObject({ runtime: "containerd", containerId: ID, podUid: UID });
  });

  it("a Podman exec: conmon names the container and the exec session", () => {
    const shell = inContainer(301, 300, "sh", `/libpod_parent/libpod-${ID}`, 5);
    expect(attribute(shell, podmanExecConmon, tree(podmanExecConmon, shell))).toMatchObject({
      runtime: "podman",
      containerId: ID,
      execId: SESSION,
      role: "exec",
      sessionPid: 301,
    });
  });

  it("a Podman container's own tty: conmon without --exec-attach is the main process", () => {
    const init = inContainer(311, 310, "sh", `/libpod_parent/libpod-${ID}`, 1);
    expect(attribute(init, podmanConmon, tree(podmanConmon, init))).toMatchObject({ runtime: "podman", role: "main", execId: null });
  });

  describe("disagreement makes it unknown (shown, never reaped)", () => {
    it("the master is held by some other process", () => {
      const shell = inContainer(101, 100, "sh", `/docker/${ID}`, 7);
      const other = host(999, 1, "python3", ["python3", "x.py"]);
      const result = attribute(shell, other, tree(dockerShim, shell, other));
      expect(result.runtime).toBe("unknown");
      expect(result.evidence.join("; ")).toMatch(/master held by python3 \(999\)/);
    });

    it("the master is held by another shim", () => {
      const shell = inContainer(101, 100, "sh", `/docker/${ID}`, 7);
      const otherShim = { ...dockerShim, pid: 150 };
      expect(attribute(shell, otherShim, tree(dockerShim, shell, otherShim)).runtime).toBe("unknown");
    });

    it("cgroup says Docker, the monitor is conmon", () => {
      const shell = inContainer(301, 300, "sh", `/docker/${ID}`, 5);
      expect(attribute(shell, podmanExecConmon, tree(podmanExecConmon, shell)).runtime).toBe("unknown");
    });

    it("conmon serves another container than the cgroup names", () => {
      const shell = inContainer(301, 300, "sh", `/libpod_parent/libpod-${OTHER}`, 5);
      expect(attribute(shell, podmanExecConmon, tree(podmanExecConmon, shell)).runtime).toBe("unknown");
    });

    it("a shim's child outside any container cgroup", () => {
      const shell = { ...inContainer(101, 100, "sh", "/", 7), cgroup: "0::/\n" };
      expect(attribute(shell, dockerShim, tree(dockerShim, shell))).toMatchObject({ runtime: "unknown", containerId: null });
    });

    it("no monitor among the ancestors: a host shell", () => {
      const sshd = host(50, 1, "sshd", ["sshd: root@pts/0"]);
      const bash = host(51, 50, "bash", ["-bash"]);
      expect(attribute(bash, sshd, tree(sshd, bash))).toMatchObject({ runtime: "unknown", role: "unknown", sessionPid: null });
    });

    it("a container process with no monitor (its parent gone): the cgroup is kept for display only", () => {
      const orphan = inContainer(401, 1, "sh", `/docker/${ID}`, 3);
      expect(attribute(orphan, null, tree(orphan))).toMatchObject({ runtime: "unknown", containerId: ID });
    });

    it("a parent loop in a corrupt tree ends", () => {
      const a = host(1000, 1001, "a", ["a"]);
      const b = host(1001, 1000, "b", ["b"]);
      expect(attribute(a, null, tree(a, b)).runtime).toBe("unknown");
    });
  });
});
