// A reaped exec's pty index handed out again on a private Docker engine: the container's main program takes the
// same /dev/pts/N the moment the exec's pty is freed, and the pty holder it starts must never get a signal.
import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cmdlineOf, descendantsOf, isAlive, leakExecSession, startContainer, testContainerName, waitFor } from "./support/index.js";
import { containerInitPid } from "./support/dockerd.js";
import type { RunningDaemon } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const CONFIG = `
pollInterval: 1s
runtimes:
  containerd:
    enabled: false
  podman:
    enabled: false
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 2s
log:
  level: debug
`;

const HOLDER_TAG = "PTYR_REUSE_HOLDER";

/**
 * The container's main program (busybox sh, pid 1 inside). busybox telnetd is the only applet that allocates a
 * pty: once the exec's /dev/pts/0 has come and gone, the main program connects to it over loopback, and the
 * login script telnetd runs leaves a signal recorder holding the new pty's slave, reparented to the main
 * program (a direct child of it, started long after the exec), while the login itself stays as session leader
 * (so no hang-up reaches the recorder).
 */
function mainProgram(): string[] {
  const recorder = [
    `echo ready >> /tmp/signals`,
    `for s in HUP INT QUIT TERM USR1 USR2 ALRM PIPE; do trap "echo $s >> /tmp/signals" $s; done`,
    `while :; do sleep 1 </dev/null >/dev/null 2>&1 & wait $!; done`,
  ].join("; ");
  const login = ["#!/bin/sh", `( ${HOLDER_TAG}=1 sh -c '${recorder}' & )`, "exec sleep 1000000"].join("\n");
  const script = [
    `printf '%s\\n' '${login.replace(/'/g, `'"'"'`)}' > /tmp/login.sh`,
    `busybox chmod 755 /tmp/login.sh`,
    `busybox telnetd -F -b 127.0.0.1:2323 -l /tmp/login.sh &`,
    `while [ ! -e /dev/pts/0 ]; do busybox usleep 10000; done`,
    `while [ -e /dev/pts/0 ]; do busybox usleep 10000; done`,
    `sleep 1000000 | busybox telnet 127.0.0.1 2323 >/dev/null 2>&1 &`,
    `while :; do sleep 1 & wait $!; done`,
  ].join("\n");
  return ["sh", "-c", script];
}

/** (st_dev, index) of the pty slave a process has open on `fd`. */
function slaveOf(pid: number, fd: number): { dev: number; index: number; rdevMajor: number } {
  const st = statSync(`/proc/${pid}/fd/${fd}`);
  return { dev: st.dev, index: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00), rdevMajor: (st.rdev >> 8) & 0xfff };
}

function ppidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

async function pollCycles(d: RunningDaemon): Promise<number> {
  return (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;
}

describe("a pty index handed out again after a reap (real kernel, private dockerd)", () => {
  const testbed = usePrivateEngine("reuse");

  it("never signals the container's own new holder of the freed index, and the main program lives", async () => {
    const name = testContainerName("pty-reuse");
    await startContainer({ name, cmd: mainProgram() });
    const mainPid = await containerInitPid(testbed.engine.socket, name);
    const leaked = await leakExecSession(name);
    const execPty = slaveOf(leaked.shellPid, 0);
    expect(execPty.index).toBe(0);

    const d = await testbed.startDaemon(CONFIG);
    const hup = await waitFor(
      () => d.logs().find((l) => l.msg === "signalled exec session" && l.execId === leaked.execId),
      60_000,
      "SIGHUP to the leaked exec",
    );
    expect(hup).toMatchObject({ signal: "SIGHUP", pids: [leaked.shellPid] });

    // The main program's holder: a direct child of it running the recorder with a pty slave on its stdout (on the
    // same devpts instance and index the exec had, checked below). Taken only once its stdout is a slave: a process
    // caught between fork and exec, or on its way out, is not it.
    const isSlave = (pid: number): boolean => {
      const major = slaveOf(pid, 1).rdevMajor;
      return major >= 136 && major <= 143;
    };
    const holder = await waitFor(
      () => descendantsOf(mainPid).find((pid) => ppidOf(pid) === mainPid && cmdlineOf(pid).some((a) => a.includes("/tmp/signals")) && isSlave(pid)),
      90_000,
      "the main program's new pty holder",
    );
    await waitFor(() => readFileSync(`/proc/${mainPid}/root/tmp/signals`, "utf8").includes("ready"), 10_000, "the holder's traps");
    const signalsSent = (): string =>
      JSON.stringify(d.logs().filter((l) => l.msg === "signalled exec session" || l.msg === "signalled exec session through its runtime"));
    expect(isAlive(holder), `the main program's holder ${holder}, before it is looked at; signals sent: ${signalsSent()}`).toBe(true);
    const holderPty = slaveOf(holder, 1);
    expect(holderPty).toEqual(execPty);
    expect(isAlive(leaked.shellPid)).toBe(false);

    const end = await waitFor(
      () =>
        d
          .logs()
          .find(
            (l) =>
              ["reaped exec session", "exec session not reaped", "failed to reap exec session"].includes(String(l.msg)) && l.execId === leaked.execId,
          ),
      120_000,
      "the escalation to end",
    );
    // Past the whole schedule (a retry would come on a later cycle): a few more cycles and a grace's worth of steps.
    const cyclesAtEnd = await pollCycles(d);
    await waitFor(async () => (await pollCycles(d)) >= cyclesAtEnd + 8, 60_000, "eight more poll cycles");

    const recorded = readFileSync(`/proc/${mainPid}/root/tmp/signals`, "utf8").split("\n").filter(Boolean);
    expect(recorded, "signals the main program's holder got").toEqual(["ready"]);
    expect(isAlive(holder), "the main program's holder").toBe(true);
    expect(isAlive(mainPid), "the container's main program").toBe(true);
    const signalled = d.logs().filter((l) => l.msg === "signalled exec session" || l.msg === "signalled exec session through its runtime");
    for (const line of signalled) expect(line.pids, JSON.stringify(line)).toEqual([leaked.shellPid]);
    // The exec's own allocation was freed: that is a reap, even though the index is held again.
    expect(end.result).toBe("reaped");
    const allocationChanged = await d.metric("ptyreaper_reap_refusals_total", { reason: "allocation_changed" });
    console.log(
      `pty index reuse: holder ${holder} (child of main ${mainPid}) on pts/${holderPty.index}; ${String(end.result)}: ${String(end.why)}; allocation_changed refusals ${allocationChanged}`,
    );
  }, 300_000);
});
