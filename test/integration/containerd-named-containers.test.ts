// Issue 21 on a real (private) containerd: a `ctr run` container named by a non-hex id in namespace `default`,
// with a `ctr tasks exec -t` shell, is attributed and listed by `ptyreaper sessions`.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SessionsReport } from "../../src/domain/report.js";
import { cleanupAll, descendantsOf, isAlive, killAndWait, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { CRI_NAMESPACE, CRI_TEST_IMAGE, startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { MAIN } from "./support/daemon.js";

const NAMESPACE = "default";
const NAME = "ptyr-named-box";
const EXEC_ID = "named-shell";

let containerd: PrivateContainerd | null = null;
let dir = "";

beforeAll(async () => {
  containerd = await startPrivateContainerd("named");
  dir = mkdtempSync(join(tmpdir(), "ptyreaper-named-"));
  // The image is in k8s.io (imported from the host's Docker engine); ctr run in `default` needs it there.
  await containerd.ctr(["images", "export", `${dir}/image.tar`, CRI_TEST_IMAGE], CRI_NAMESPACE);
  await containerd.ctr(["images", "import", `${dir}/image.tar`], NAMESPACE);
  // Its own runc root, so nothing is shared with another containerd on the host.
  await containerd.ctr(["run", "-d", "--runc-root", `${containerd.root}/runc`, CRI_TEST_IMAGE, NAME, "sleep", "3600"], NAMESPACE);
}, 120_000);

afterAll(async () => {
  if (containerd) {
    // destroy() ends k8s.io's tasks only: this namespace's go first.
    const ctr = containerd.ctr.bind(containerd);
    await ctr(["tasks", "kill", "-a", "-s", "SIGKILL", NAME], NAMESPACE).catch(() => undefined);
    await waitFor(async () => !/RUNNING/.test(await ctr(["tasks", "ls"], NAMESPACE)), 20_000, "the task to stop").catch(() => undefined);
    await ctr(["tasks", "rm", "-f", NAME], NAMESPACE).catch(() => undefined);
    await ctr(["containers", "rm", NAME], NAMESPACE).catch(() => undefined);
  }
  await cleanupAll();
  await containerd?.destroy();
}, 120_000);

describe("containerd containers with non-hex ids", () => {
  it("a ctr run container named by a non-hex id in namespace default: its tty exec is a session of that container", async () => {
    const running = containerd as PrivateContainerd;
    const command = `exec ctr -a ${running.socket} -n ${NAMESPACE} tasks exec -t --exec-id ${EXEC_ID} ${NAME} sh`;
    const script = spawn("script", ["-qfc", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, TERM: "xterm" } });
    trackProcess(script.pid as number, "script for ctr tasks exec", script);
    try {
      // The exec's process, as containerd lists it: `ctr tasks ps` shows each pid with its exec ID.
      const shellPid = await waitFor(
        async () => {
          const line = (await running.ctr(["tasks", "ps", NAME], NAMESPACE)).split("\n").find((l) => l.includes(EXEC_ID));
          return line === undefined ? undefined : Number(line.trim().split(/\s+/)[0]);
        },
        30_000,
        "the exec's process",
      );
      trackProcess(shellPid, "ctr exec shell");
      const clientPid = descendantsOf(script.pid as number)[0];
      const config = join(dir, "config.yaml");
      writeFileSync(
        config,
        `docker: {enabled: false}\nruntimes:\n  containerd: {enabled: true, socket: ${running.socket}, namespaces: [${NAMESPACE}]}\n  podman: {enabled: false}\n`,
      );
      const cli = spawnSync(process.execPath, [MAIN, "sessions", "--json", "--config", config], { encoding: "utf8", timeout: 60_000 });
      expect(cli.status, cli.stderr).toBe(0);
      const report = JSON.parse(cli.stdout) as SessionsReport;
      const session = report.sessions.find((s) => s.execId === EXEC_ID);
      expect(session, `sessions: ${JSON.stringify(report.sessions.map((s) => [s.execId, s.containerId]))}`).toMatchObject({
        runtime: "containerd",
        containerId: NAME,
        containerName: NAME,
        pid: shellPid,
      });
      // The table names it too.
      const table = spawnSync(process.execPath, [MAIN, "sessions", "--config", config], { encoding: "utf8", timeout: 60_000 });
      expect(table.stdout).toContain(NAME);
      expect(clientPid === undefined || isAlive(clientPid)).toBe(true);
    } finally {
      if (script.stdin.writable) script.stdin.write("exit\r");
      await waitFor(() => script.exitCode !== null || script.signalCode !== null, 10_000, "script to exit").catch(() => undefined);
      await killAndWait(script.pid as number, script);
    }
  }, 120_000);
});
