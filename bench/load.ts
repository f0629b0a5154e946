// A synthetic busy host on demand: N processes × M fds and K ptys over L devpts namespaces; tears down exactly what it made.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { AGENT_PY } from "./agent.js";

export interface LoadSpec {
  /** fd-holder processes (each a `sleep`). */
  procs: number;
  /** Open fds per holder, 0-2 included. */
  fds: number;
  /** ptys in all, spread over `namespaces`. */
  ptys: number;
  /** PID + mount namespaces, each with its own devpts instance. */
  namespaces: number;
  /**
   * Everything inside one private PID namespace with its own /proc, which `procRoot` points at:
   * tests then see only their own processes, whatever else runs on the machine.
   */
  isolated?: boolean;
  /** Lifetime of every helper if teardown never runs; parent-death signals normally end them first. */
  sleepSeconds?: number;
}

export interface LoadNamespace {
  /** pid of the namespace's init as seen in `procRoot`. */
  pid: number;
  devptsDev: string;
  ptys: { index: number; slavePid: number }[];
}

/** One python agent: a JSON request per line in, one JSON reply per line out. */
class Agent {
  private readonly replies: ((line: string) => void)[] = [];
  private stderr = "";
  private exited: Promise<void>;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    if (!child.stdout || !child.stdin || !child.stderr) throw new Error(`${name}: stdio must be pipes`);
    createInterface({ input: child.stdout }).on("line", (line) => this.replies.shift()?.(line));
    child.stderr.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    // An agent that dies fails whoever waits for a reply, with its stderr as the reason.
    void this.exited.then(() => {
      for (const resolve of this.replies.splice(0)) resolve(JSON.stringify({ error: `${name} exited: ${this.stderr.trim()}` }));
    });
  }

  /** The first line an agent prints, before any request. */
  hello<T>(): Promise<T> {
    return this.next<T>();
  }

  request<T>(req: Record<string, unknown>): Promise<T> {
    const reply = this.next<T>();
    this.child.stdin?.write(`${JSON.stringify(req)}\n`);
    return reply;
  }

  private next<T>(): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.replies.push((line) => {
        const value = JSON.parse(line) as T & { error?: string };
        if (value.error !== undefined) reject(new Error(`${this.name}: ${value.error}`));
        else resolve(value);
      });
    });
  }

  /** Asks the agent to reap its children and exit; kills it after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.write(`${JSON.stringify({ op: "exit" })}\n`);
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Start time (stat field 22) of a host pid, or null when gone: guards every kill against PID reuse. */
function startTicks(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null; // gone
  }
}

function kernelPty(name: "nr" | "max" | "reserve"): number {
  return Number(readFileSync(`/proc/sys/kernel/pty/${name}`, "utf8"));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class SyntheticHost {
  /** The /proc whose processes this load is: "/proc", or the isolated namespace's own. */
  procRoot = "/proc";
  readonly namespaces: LoadNamespace[] = [];
  /** pids of the fd holders, as seen in `procRoot`. */
  readonly holderPids: number[] = [];
  private spawner: Agent | null = null;
  private hub: Agent | null = null;
  private readonly nsAgents: Agent[] = [];
  /** Every host pid this load started directly, with its start time, for the final check. */
  private readonly started = new Map<number, string>();
  private readonly workdir: string;
  private closed = false;

  private readonly agentPath: string;
  /** What starts an agent inside the isolated namespace (empty when not isolated). */
  private prefix: string[] = [];
  /** How many times its first size the load is (scale). */
  private times = 1;

  private constructor(readonly spec: Required<LoadSpec>) {
    this.workdir = mkdtempSync(join(tmpdir(), "ptyreaper-bench-"));
    this.agentPath = join(this.workdir, "agent.py");
    writeFileSync(this.agentPath, AGENT_PY);
  }

  /** Builds the load; on failure tears down whatever it had started, then throws. */
  static async create(spec: LoadSpec): Promise<SyntheticHost> {
    const full: Required<LoadSpec> = { isolated: false, sleepSeconds: 6 * 3600, ...spec };
    if (full.fds < 3) throw new Error("--fds must be at least 3 (stdin, stdout, stderr)");
    if (full.ptys > 0 && full.namespaces < 1) throw new Error("ptys need at least one namespace");
    // Namespaced devpts instances allocate up to max - reserve; leave room for everyone else on the machine.
    const room = kernelPty("max") - kernelPty("reserve") - kernelPty("nr") - 64;
    if (full.ptys > room) throw new Error(`${full.ptys} ptys would not fit: only ${room} left below pty.max - pty.reserve`);
    const host = new SyntheticHost(full);
    try {
      await host.build();
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  private async build(): Promise<void> {
    const { spec } = this;
    const prefix: string[] = [];
    if (spec.isolated) {
      this.hub = this.startAgent("hub", ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"], ["hub"]);
      await this.hub.hello();
      const hubPid = await this.childOf(this.hub.child.pid ?? 0);
      this.procRoot = `/proc/${hubPid}/root/proc`;
      prefix.push("nsenter", `--target=${hubPid}`, "--pid", "--mount", "--");
    }
    this.prefix = prefix;
    this.spawner = this.startAgent("spawner", prefix, ["spawner", String(spec.fds), String(spec.sleepSeconds), this.workdir]);
    await this.addNamespaces(spec.namespaces, spec.ptys, spec.procs);
  }

  /** `count` more devpts namespaces holding `ptys` more ptys between them, and `procs` more fd holders. */
  private async addNamespaces(count: number, ptys: number, procs: number): Promise<void> {
    const first = this.nsAgents.length;
    for (let n = first; n < first + count; n++) {
      const unshare = ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--kill-child", "--"];
      const agent = this.startAgent(`ns${n}`, [...this.prefix, ...unshare], ["ns", String(this.spec.sleepSeconds)]);
      this.nsAgents.push(agent);
      const hello = await agent.hello<{ pid: number; devptsDev: string }>();
      this.namespaces.push({ pid: hello.pid, devptsDev: hello.devptsDev, ptys: [] });
      this.remember([hello.pid]);
    }
    await this.spawnHolders(procs);
    for (let k = 0; k < count; k++) {
      // Round-robin, so the first namespaces get one more when K is not a multiple of L.
      await this.openPtys(first + k, Math.floor(ptys / count) + (k < ptys % count ? 1 : 0));
    }
  }

  /** Grows the load to `times` its first size (processes, ptys and namespaces): the bench's 4× host. */
  async scale(times: number): Promise<void> {
    const { spec } = this;
    const add = times - this.times;
    if (add <= 0) return;
    const room = kernelPty("max") - kernelPty("reserve") - kernelPty("nr") - 64;
    if (spec.ptys * add > room) throw new Error(`${spec.ptys * add} more ptys would not fit: only ${room} left below pty.max - pty.reserve`);
    await this.addNamespaces(spec.namespaces * add, spec.ptys * add, spec.procs * add);
    this.times = times;
  }

  /**
   * One short-lived process (churn): on the host (the spawner's child, with the holders' fds) or in
   * namespace `ns` (a child of its init); it runs `sleep seconds` and ends. Its pid, as seen in procRoot.
   */
  async blip(where: "host" | number, seconds: number): Promise<number> {
    const agent = where === "host" ? this.spawner : this.nsAgent(where);
    if (!agent) throw new Error("load closed");
    return (await agent.request<{ pid: number }>({ op: "blip", seconds })).pid;
  }

  /** Runs `python3 agent.py args` behind `wrapper`, dying with this process (setpriv --pdeathsig). */
  private startAgent(name: string, wrapper: string[], args: string[]): Agent {
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", ...wrapper, "python3", this.agentPath, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    if (child.pid !== undefined) {
      const ticks = startTicks(child.pid);
      if (ticks !== null) this.started.set(child.pid, ticks);
    }
    return new Agent(name, child);
  }

  /** Host pids the agents made, kept for the final check (isolated pids die with the namespace instead). */
  private remember(pids: readonly number[]): void {
    if (this.spec.isolated) return;
    for (const pid of pids) {
      const ticks = startTicks(pid);
      if (ticks !== null) this.started.set(pid, ticks);
    }
  }

  /** The one child of `pid` (unshare's forked init), from /proc/PID/task/PID/children. */
  private async childOf(pid: number): Promise<number> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
      if (text !== "") return Number(text.split(" ")[0]);
      await sleep(10);
    }
    throw new Error(`no child of ${pid}`);
  }

  async spawnHolders(count: number): Promise<number[]> {
    if (!this.spawner) throw new Error("load closed");
    const { pids } = await this.spawner.request<{ pids: number[] }>({ op: "spawn", count });
    this.holderPids.push(...pids);
    this.remember(pids);
    return pids;
  }

  async killHolders(pids: readonly number[]): Promise<void> {
    if (!this.spawner) throw new Error("load closed");
    await this.spawner.request({ op: "kill", pids });
    const gone = new Set(pids);
    this.holderPids.splice(0, this.holderPids.length, ...this.holderPids.filter((pid) => !gone.has(pid)));
  }

  async openPtys(ns: number, count: number): Promise<{ index: number; slavePid: number }[]> {
    const { ptys } = await this.nsAgent(ns).request<{ ptys: { index: number; slavePid: number }[] }>({ op: "open", count });
    this.namespaces[ns]?.ptys.push(...ptys);
    this.remember(ptys.map((pty) => pty.slavePid));
    return ptys;
  }

  /** Closes the `count` ptys opened last in namespace `ns` (master closed, slave holder killed). */
  async closePtys(ns: number, count: number): Promise<void> {
    await this.nsAgent(ns).request({ op: "close", count });
    const list = this.namespaces[ns]?.ptys;
    list?.splice(Math.max(0, list.length - count));
  }

  /** The namespace init holds slave `index` on a fd that held /dev/null: same fd count, new table. */
  async adopt(ns: number, index: number): Promise<number> {
    return (await this.nsAgent(ns).request<{ fd: number }>({ op: "adopt", index })).fd;
  }

  async release(ns: number): Promise<void> {
    await this.nsAgent(ns).request({ op: "release" });
  }

  /** Sets the times of the n-th pty of namespace `ns` (seconds since the epoch). */
  async touch(ns: number, n: number, atime: number, mtime: number): Promise<void> {
    await this.nsAgent(ns).request({ op: "touch", n, atime, mtime });
  }

  get ptyCount(): number {
    return this.namespaces.reduce((sum, ns) => sum + ns.ptys.length, 0);
  }

  private nsAgent(ns: number): Agent {
    const agent = this.nsAgents[ns];
    if (!agent || this.closed) throw new Error(`no namespace ${ns}`);
    return agent;
  }

  /** Stops every agent (each reaps its own children), then kills any pid it started that is still there. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const agents = [this.spawner, ...this.nsAgents].filter((agent): agent is Agent => agent !== null);
    await Promise.all(agents.map((agent) => agent.stop(10_000)));
    await this.hub?.stop(10_000); // pid 1 of the isolated namespace: the kernel kills whatever is left in it
    this.spawner = null;
    for (const [pid, ticks] of this.started) {
      if (startTicks(pid) === ticks) process.kill(pid, "SIGKILL");
    }
    this.started.clear();
    rmSync(this.workdir, { recursive: true, force: true });
  }
}
