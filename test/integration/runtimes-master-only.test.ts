// On a real private containerd (CRI) and a real private Podman: an exec whose shell is killed directly leaves its pty with
// only the runtime's master; while the runtime still holds it, the daemon names it master-only with the runtime, holder
// and container; once the runtime lets go, it is gone. How long each runtime held the master is measured and printed.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SessionsReport } from "../../src/domain/report.js";
import { ptyKey } from "../../src/domain/types.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { isAlive, killAndWait, waitFor } from "./support/index.js";
import { slaveKey } from "./support/accounting.js";
import type { KubernetesIdentity } from "./support/cri.js";
import { leakCriExec } from "./support/cri-exec.js";
import { leakPodmanExec } from "./support/podman.js";
import { usePrivateRuntimes } from "./support/private-runtimes.js";

const POLL_MS = 1_000;
const GRACE_MS = 1_000;
/** Held this long, the daemon must have named it: the grace, plus a cycle to see it first and one to see it past the grace, and slack. */
const OBSERVABLE_MS = GRACE_MS + 3 * POLL_MS;
const POD: KubernetesIdentity = {
  namespace: "ptyr-test",
  pod: "master-only-pod",
  podUid: "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
  container: "shell",
};
const procfs = new ProcFs("/proc");

const runtimes = usePrivateRuntimes("mastonly", { teardownTimeoutMs: 180_000 });
let criContainer = "";
let podmanContainer = "";
const measured: string[] = [];

beforeAll(async () => {
  criContainer = (await runtimes.runPod(POD)).containerId;
  podmanContainer = await runtimes.podman.runContainer("ptyr-test-master-only-podman");
  // Only our private runtimes are watched, and nothing is signalled.
  await runtimes.startDaemon(`docker:
  enabled: false
${runtimes.runtimesYaml}
pollInterval: 1s
masterOnlyGrace: 1s
reaper:
  mode: dry-run
`);
}, 180_000);

afterAll(() => {
  if (measured.length > 0) console.log(`master held after the exec's shell was killed: ${measured.join("; ")}`);
});

type ReportPty = SessionsReport["ptys"][number];

async function reportedPty(key: string): Promise<{ takenAtMs: number; pty: ReportPty | undefined }> {
  const { status, body } = await runtimes.daemon.get("/sessions");
  if (status !== 200) throw new Error(`/sessions answered ${status}`);
  const report = JSON.parse(body) as SessionsReport;
  return { takenAtMs: Date.parse(report.takenAt), pty: report.ptys.find((p) => `${p.devptsDev}:${p.index}` === key) };
}

function holdersOf(key: string): string[] {
  return scanProc(procfs)
    .ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key)
    .map((fd) => `${fd.role}:${fd.pid}`);
}

/**
 * Kills the exec's shell by pid and follows its pty: in /proc until no process holds it, and in the daemon's
 * /sessions meanwhile. Resolves with how long the runtime held the master and the master-only entry seen, if any.
 */
async function killShellAndFollow(shellPid: number, what: string): Promise<{ key: string; heldMs: number; seen: ReportPty | null }> {
  const key = slaveKey(shellPid);
  await waitFor(async () => (await reportedPty(key)).pty?.slavePids.includes(shellPid), 30_000, `the daemon to see ${what}'s pty held by its shell`);
  await killAndWait(shellPid);
  const killedAt = Date.now();
  let seen = null as ReportPty | null;
  let releasedAt: number | null = null;
  await waitFor(
    async () => {
      const now = Date.now();
      if (releasedAt === null && holdersOf(key).length === 0) releasedAt = now;
      const { takenAtMs, pty } = await reportedPty(key);
      if (seen === null && pty?.masterOnly) seen = pty;
      // Done once /proc shows it freed and a cycle after that shows it gone.
      return releasedAt !== null && takenAtMs > releasedAt && pty === undefined;
    },
    180_000,
    `${what}'s pty to be released and gone from /sessions`,
    200,
  );
  const heldMs = (releasedAt ?? Date.now()) - killedAt;
  measured.push(`${what} ${(heldMs / 1000).toFixed(1)} s (${seen ? "named master-only" : "not named"})`);
  return { key, heldMs, seen };
}

describe("a runtime still holding a killed exec's master", () => {
  it("containerd CRI: the shim's master is master-only with runtime containerd and the pod's container, then gone", async () => {
    const leaked = await leakCriExec(runtimes.cri, runtimes.containerd, criContainer);
    const shim = Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${leaked.shellPid}/stat`, "utf8"))?.[1]);
    const { key, heldMs, seen } = await killShellAndFollow(leaked.shellPid, "containerd shim");
    expect(isAlive(leaked.shellPid)).toBe(false);
    if (heldMs >= OBSERVABLE_MS) expect(seen, `the shim held ${key}'s master ${heldMs} ms`).not.toBeNull();
    if (seen !== null) {
      expect(seen).toMatchObject({ containerId: criContainer, runtime: "containerd", masterPids: [shim], slavePids: [] });
      expect(seen.masterOnly).toMatchObject({ holder: "containerd-shim", runtime: "containerd", containerId: criContainer, holderPid: shim });
      expect(seen.masterOnly?.sinceSeconds).toBeGreaterThanOrEqual(GRACE_MS / 1000);
    }
    // Never a session: nothing would be reaped for it, and the shim lives on.
    expect(await runtimes.daemon.metric("ptyreaper_would_reap_sessions_total")).toBe(0);
    expect(isAlive(shim)).toBe(true);
  }, 240_000);

  it("Podman: conmon's master is master-only with runtime podman and the container while conmon holds it, then gone", async () => {
    const leaked = await leakPodmanExec(runtimes.podman, podmanContainer);
    const { key, heldMs, seen } = await killShellAndFollow(leaked.shellPid, "podman conmon");
    if (heldMs >= OBSERVABLE_MS) expect(seen, `conmon held ${key}'s master ${heldMs} ms`).not.toBeNull();
    if (seen !== null) {
      expect(seen.masterOnly).toMatchObject({ holder: "conmon", runtime: "podman", containerId: podmanContainer, holderPid: leaked.conmonPid });
    }
    expect(await runtimes.daemon.metric("ptyreaper_would_reap_sessions_total")).toBe(0);
  }, 240_000);
});
