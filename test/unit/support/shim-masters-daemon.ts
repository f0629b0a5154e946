// The daemon over test/fixtures/proc/containerd-shim-masters: a containerd shim holding twenty exec masters nobody's slave.
import type { Stats } from "node:fs";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createDaemon, type Daemon } from "../../../src/app.js";
import { defaultConfig } from "../../../src/config/load.js";
import type { Config } from "../../../src/config/types.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import { scanProc } from "../../../src/procfs/scan.js";
import type { ExecSignal, KillOutcome, RuntimePort } from "../../../src/runtimes/port.js";
import type { RuntimeContainer, RuntimeExec } from "../../../src/domain/runtime.js";

export const SHIM_MASTERS_ROOT = fileURLToPath(new URL("../../fixtures/proc/containerd-shim-masters", import.meta.url));
export const SHIM_CONTAINER_ID = "4c1e2d3f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";
export const SHIM_PID = 800;
export const SHIM_CONTAINER_DEVPTS = "0:60";
export const SHIM_MASTERS = 20;

/** new_encode_dev(), as st_dev / st_rdev carry it. */
function dev(major: number, minor: number): number {
  return (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096;
}

/** fd links cannot carry devices: the shim's fds 10-29 are ptmx (5:2) on the container's devpts, ptmx inode 2. */
class ShimMastersProcFs extends ProcFs {
  override fdStat(pid: number, fd: string): Stats {
    const n = Number(fd);
    if (pid !== SHIM_PID || n < 10 || n >= 10 + SHIM_MASTERS) throw new Error(`fixture: no stat for ${pid}/fd/${fd}`);
    return { isCharacterDevice: () => true, rdev: dev(5, 2), dev: dev(0, 60), ino: 2, atimeMs: 0, mtimeMs: 0 } as unknown as Stats;
  }
}

/** containerd's answer: the pod's container is running, its execs are over (the shim kept their masters). */
export class FinishedExecsContainerd implements RuntimePort {
  readonly runtime = "containerd" as const;
  readonly endpoint = "fake containerd";
  kills: [string, ExecSignal][] = [];
  version = (): Promise<string> => Promise.resolve("1.7.22");
  listContainers = (): Promise<RuntimeContainer[]> => Promise.resolve([this.container]);
  getContainer = (): Promise<RuntimeContainer | null> => Promise.resolve(this.container);
  listExecs = (): Promise<RuntimeExec[]> => Promise.resolve([]);
  killExec = (exec: Pick<RuntimeExec, "id" | "container">, signal: ExecSignal): Promise<KillOutcome> => {
    this.kills.push([exec.id, signal]);
    return Promise.resolve("signalled");
  };
  close = (): void => undefined;
  private readonly container: RuntimeContainer = {
    runtime: "containerd",
    namespace: "k8s.io",
    id: SHIM_CONTAINER_ID,
    initPid: 810,
    labels: { "io.kubernetes.pod.namespace": "team-a", "io.kubernetes.pod.name": "web-0", "io.kubernetes.container.name": "app" },
    kubernetes: { namespace: "team-a", pod: "web-0", podUid: "7f3e2d1c-0b9a-4887-a665-544332211000", container: "app" },
  };
}

export interface ShimMastersDaemon {
  daemon: Daemon;
  config: Config;
  containerd: FinishedExecsContainerd;
  /** Every signal the daemon tried to send by pid. */
  signals: [number, string][];
  /** Moves the daemon's wall clock. */
  advance(ms: number): void;
}

/** The daemon in enforce mode with a 1-minute masterOnlyGrace; pty usage (20 of 23) is above pressure.high. */
export function shimMastersDaemon(over: Partial<Config> = {}): ShimMastersDaemon {
  const base = defaultConfig();
  const config: Config = {
    ...base,
    procRoot: SHIM_MASTERS_ROOT,
    docker: { ...base.docker, enabled: false },
    masterOnlyGrace: 60_000,
    reaper: { ...base.reaper, mode: "enforce" },
    ...over,
  };
  const procfs = new ShimMastersProcFs(SHIM_MASTERS_ROOT);
  let nowMs = Date.parse("2026-01-01T00:00:00Z");
  const signals: [number, string][] = [];
  const containerd = new FinishedExecsContainerd();
  const daemon = createDaemon({
    config,
    logger: pino({ level: "silent" }),
    version: "test",
    now: () => nowMs,
    scanner: { scan: (options) => scanProc(procfs, options), close: () => Promise.resolve() },
    runtimePorts: [containerd],
    sendSignal: (pid, signal) => void signals.push([pid, String(signal)]),
  });
  return { daemon, config, containerd, signals, advance: (ms) => (nowMs += ms) };
}
