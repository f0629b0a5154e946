// Pure: pairs each Docker exec with the local `docker exec` CLI that started it, and follows that client
// from cycle to cycle: attached while it lives and holds its Engine connection, gone from the first
// cycle it was seen without them, unknown whenever the pairing cannot be proven unique.
import { formatDuration } from "../../config/duration.js";
import { unknownClient, type ClientState } from "../../domain/client.js";

/** USER_HZ: process start times are in these ticks (100 on every Linux ABI). */
const TICKS_PER_SECOND = 100;

/**
 * A `docker exec` CLI starts its exec within this long of its own start: it pings the engine,
 * creates the exec and starts it (60–190 ms measured on a 2-core host at load 10). Generous, because
 * a client whose exec started later is not seen as a candidate at all.
 */
export const CLIENT_TO_EXEC_MAX_MS = 10_000;
/**
 * An exec is paired only this long after it started: by then every client that could have started
 * it has started, and every other exec that one of them could have started is running and known.
 */
export const PAIRING_DELAY_MS = 2 * CLIENT_TO_EXEC_MAX_MS;

const WINDOW_TICKS = (CLIENT_TO_EXEC_MAX_MS / 1000) * TICKS_PER_SECOND;
const DELAY_TICKS = (PAIRING_DELAY_MS / 1000) * TICKS_PER_SECOND;

/** What a docker CLI's argv names. */
export interface ClientTarget {
  container: string;
  command: readonly string[];
}

/** A live `docker exec -t` CLI process (or one whose argv could not be read), as one cycle saw it. */
export interface ClientSighting {
  pid: number;
  /** Start time in clock ticks after boot: with the pid, names the process across PID reuse. */
  startTicks: number;
  /** What its argv names; null when the argv could not be read, so it may have started any exec. */
  target: ClientTarget | null;
  /** Holds a connection to this engine's socket now; null when its fds could not be read. */
  connected: boolean | null;
}

/** A running tty exec, as one cycle saw it. */
export interface ExecSighting {
  execId: string;
  containerId: string;
  /** Without the API's leading "/". */
  containerName: string;
  /** The exec's argv: ExecInspect's entrypoint, then its arguments. */
  command: readonly string[];
  /** Start of the exec's process, in clock ticks after boot. */
  startTicks: number;
}

export interface ClientCycle {
  nowMs: number;
  /** Clock ticks since boot now (the same clock as startTicks). */
  nowTicks: number;
  /** Every running tty exec: pairing needs all of them to prove a client had only one. */
  execs: readonly ExecSighting[];
  /** Every live docker exec CLI seen, including the tracked ones that are still alive. */
  clients: readonly ClientSighting[];
  /** False when connections could not be read this cycle: no exec is paired then, they stay pending. */
  canPair: boolean;
}

interface TrackedClient {
  pid: number;
  startTicks: number;
  target: ClientTarget | null;
  /** Seen holding a connection to this engine at least once. */
  everConnected: boolean;
  /** First of the cycles in a row that saw it alive without its Engine connection; null while connected. */
  disconnectedSinceMs: number | null;
  disconnectedSinceTicks: number | null;
  /** First cycle it was seen exited, or the first of two in a row without its Engine connection; null while attached. */
  goneSinceMs: number | null;
  goneSinceTicks: number | null;
  /** What ended it, for the session's detail. */
  goneHow: string;
}

type Verdict = { kind: "paired"; client: string } | { kind: "unknown"; detail: string };

const key = (pid: number, startTicks: number): string => `${pid}@${startTicks}`;

/** Whether a client's argv names this exec: its container (name, or id or id prefix) and its command. */
export function namesExec(target: ClientTarget, exec: ExecSighting): boolean {
  const ref = target.container.replace(/^\//, "");
  const container = ref === exec.containerName || (/^[0-9a-f]+$/.test(ref) && exec.containerId.startsWith(ref));
  return container && target.command.length === exec.command.length && target.command.every((arg, i) => arg === exec.command[i]);
}

export class DockerClientTracker {
  private readonly clients = new Map<string, TrackedClient>();
  private readonly verdicts = new Map<string, Verdict>();

  /** How many clients and verdicts are kept (bounded by pruning; for tests and the soak). */
  get size(): { clients: number; verdicts: number } {
    return { clients: this.clients.size, verdicts: this.verdicts.size };
  }

  /** Keys of tracked clients still believed alive: the reader re-checks these even if the scan missed them. */
  livePids(): { pid: number; startTicks: number }[] {
    return [...this.clients.values()].filter((c) => c.goneSinceMs === null).map((c) => ({ pid: c.pid, startTicks: c.startTicks }));
  }

  /** One cycle: records what was seen, pairs the execs whose window has closed, and says where each exec's client is. */
  update(cycle: ClientCycle): Map<string, ClientState> {
    this.record(cycle);
    const states = new Map<string, ClientState>();
    for (const exec of cycle.execs) {
      let verdict = this.verdicts.get(exec.execId);
      if (verdict === undefined) {
        if (!cycle.canPair || cycle.nowTicks < exec.startTicks + DELAY_TICKS) {
          states.set(exec.execId, unknownClient(`pairing pending: clients are paired ${formatDuration(PAIRING_DELAY_MS)} after their exec starts`));
          continue;
        }
        verdict = this.pair(exec, cycle.execs);
        this.verdicts.set(exec.execId, verdict);
      }
      states.set(exec.execId, this.stateOf(verdict));
    }
    this.prune(cycle);
    return states;
  }

  private record(cycle: ClientCycle): void {
    const seen = new Set<string>();
    for (const sighting of cycle.clients) {
      const k = key(sighting.pid, sighting.startTicks);
      seen.add(k);
      let client = this.clients.get(k);
      if (client === undefined) {
        client = {
          pid: sighting.pid,
          startTicks: sighting.startTicks,
          target: sighting.target,
          everConnected: false,
          disconnectedSinceMs: null,
          disconnectedSinceTicks: null,
          goneSinceMs: null,
          goneSinceTicks: null,
          goneHow: "",
        };
        this.clients.set(k, client);
      }
      if (sighting.connected === true) {
        client.everConnected = true;
        client.disconnectedSinceMs = client.disconnectedSinceTicks = null;
      } else if (sighting.connected === false && client.everConnected && client.goneSinceMs === null) {
        // Two cycles in a row, so one unlucky read (a connection replaced between reads) is not taken for a drop.
        if (client.disconnectedSinceMs === null) {
          client.disconnectedSinceMs = cycle.nowMs;
          client.disconnectedSinceTicks = cycle.nowTicks;
        } else {
          this.markGone(client, client.disconnectedSinceMs, client.disconnectedSinceTicks ?? cycle.nowTicks, "dropped its connection to the engine");
        }
      }
    }
    for (const [k, client] of this.clients) if (!seen.has(k)) this.markGone(client, cycle.nowMs, cycle.nowTicks, "exited");
  }

  private markGone(client: TrackedClient, sinceMs: number, sinceTicks: number, how: string): void {
    if (client.goneSinceMs !== null) return;
    client.goneSinceMs = sinceMs;
    client.goneSinceTicks = sinceTicks;
    client.goneHow = how;
  }

  /** Could `client` have started `exec`: it names it, started before it, within the window, and was alive then. */
  private isCandidate(client: TrackedClient, exec: ExecSighting): boolean {
    if (exec.startTicks < client.startTicks || exec.startTicks > client.startTicks + WINDOW_TICKS) return false;
    if (client.goneSinceTicks !== null && exec.startTicks > client.goneSinceTicks) return false;
    return client.target === null || namesExec(client.target, exec);
  }

  private pair(exec: ExecSighting, execs: readonly ExecSighting[]): Verdict {
    const candidates = [...this.clients.entries()].filter(([, c]) => this.isCandidate(c, exec));
    if (candidates.length === 0) {
      return { kind: "unknown", detail: "no local docker CLI client seen (remote, not the CLI, or ended before ptyreaper saw it)" };
    }
    if (candidates.length > 1) {
      const pids = candidates.map(([, c]) => c.pid).join(", ");
      return { kind: "unknown", detail: `${candidates.length} docker CLI clients could have started it (pids ${pids})` };
    }
    const [k, client] = candidates[0] as [string, TrackedClient];
    if (client.target === null) return { kind: "unknown", detail: `docker CLI pid ${client.pid}: argv could not be read` };
    if (!client.everConnected) {
      return { kind: "unknown", detail: `docker CLI pid ${client.pid} has no connection to this engine's socket (TCP, ssh, or another network namespace)` };
    }
    const rival = execs.find((other) => other.execId !== exec.execId && this.isCandidate(client, other));
    if (rival !== undefined) {
      return { kind: "unknown", detail: `docker CLI pid ${client.pid} could have started exec ${rival.execId.slice(0, 12)} too` };
    }
    return { kind: "paired", client: k };
  }

  private stateOf(verdict: Verdict): ClientState {
    if (verdict.kind === "unknown") return unknownClient(verdict.detail);
    const client = this.clients.get(verdict.client);
    // Kept while its verdict exists (see prune); a missing one would be a bug, and "unknown" is the safe answer.
    if (client === undefined) return unknownClient("client record lost");
    if (client.goneSinceMs === null) return { state: "attached", detail: `docker CLI pid ${client.pid}` };
    return { state: "gone", sinceMs: client.goneSinceMs, detail: `docker CLI pid ${client.pid} ${client.goneHow}` };
  }

  /** Forgets execs that ended, and gone clients no exec refers to that can no longer be a candidate. */
  private prune(cycle: ClientCycle): void {
    const running = new Set(cycle.execs.map((e) => e.execId));
    for (const execId of this.verdicts.keys()) if (!running.has(execId)) this.verdicts.delete(execId);
    const referenced = new Set<string>();
    for (const verdict of this.verdicts.values()) if (verdict.kind === "paired") referenced.add(verdict.client);
    for (const [k, client] of this.clients) {
      const pastWindow = cycle.nowTicks > client.startTicks + WINDOW_TICKS + DELAY_TICKS;
      if (client.goneSinceMs !== null && pastWindow && !referenced.has(k)) this.clients.delete(k);
    }
  }
}
