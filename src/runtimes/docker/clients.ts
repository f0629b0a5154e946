// Pure: pairs each Docker exec with the local `docker exec` CLI that started it, and follows that client
// from cycle to cycle: attached while it lives and holds its Engine connection, gone from the first
// cycle it was seen without them, unknown whenever the pairing cannot be proven unique.
import { formatDuration } from "../../config/duration.js";
import { unknownClient } from "../../domain/client.js";
import type { ClientState } from "../../domain/types.js";
import { CLOCK_TICKS_PER_SECOND as TICKS_PER_SECOND } from "../../domain/inventory.js";
import { partnersOf, type ExecPartner } from "./matching.js";

/**
 * A `docker exec` CLI starts its exec within this long of its own start: it pings the engine, creates
 * the exec and starts it. Measured on this 2-core host (docker 20.10, 140 CLIs): 30–130 ms one at a
 * time, at load 4.5 and with 6 busy loops; 30–280 ms (median 120) three at once with 10 busy loops
 * (load 7.7). Generous (over 15 times the longest), because a CLI whose exec starts later is no
 * candidate for it: its exec then goes unpaired, or, with other CLIs side by side, could be matched across.
 */
export const CLIENT_TO_EXEC_MAX_MS = 5_000;
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

/** A pairing a previous run left: the exec, its client, and when and how the client ended (null: alive). */
export interface RestoredPair {
  execId: string;
  pid: number;
  startTicks: number;
  gone: { sinceMs: number; sinceTicks: number; how: string } | null;
}

interface TrackedClient {
  pid: number;
  startTicks: number;
  target: ClientTarget | null;
  /** Seen holding a connection to this engine at least once. */
  everConnected: boolean;
  /** Seen holding it in this cycle. */
  connectedNow: boolean;
  /** First of the cycles in a row that saw it alive without its Engine connection; null while connected. */
  disconnectedSinceMs: number | null;
  disconnectedSinceTicks: number | null;
  /** First cycle it was seen exited, or the first of two in a row without its Engine connection; null while attached. */
  goneSinceMs: number | null;
  goneSinceTicks: number | null;
  /** What ended it, for the session's detail. */
  goneHow: string;
}

/**
 * Decided once per exec. `clients` are the exec's possible clients at that moment: it keeps needing one
 * of them while it runs, so later execs are matched around it (a paired exec's client is taken).
 */
type Verdict = { kind: "paired"; client: string } | { kind: "unknown"; detail: string; clients: readonly string[] };

const key = (pid: number, startTicks: number): string => `${pid}@${startTicks}`;
const pidOf = (k: string): string => k.slice(0, k.indexOf("@"));

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

  /** Each paired exec's client (`pid@startTicks`): the pairing a restart needs. */
  links(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [execId, verdict] of this.verdicts) if (verdict.kind === "paired") out.set(execId, verdict.client);
    return out;
  }

  /**
   * Takes back pairings a previous run proved, before any cycle of this one: each exec keeps its client,
   * alive (followed from now on) or gone since `goneSinceMs`. The argv is not read again (target null):
   * only the pairing is needed, and a client past its window is no candidate for a new exec anyway.
   */
  restore(pairs: readonly RestoredPair[]): void {
    for (const pair of pairs) {
      const k = key(pair.pid, pair.startTicks);
      const gone = pair.gone;
      this.clients.set(k, {
        pid: pair.pid,
        startTicks: pair.startTicks,
        target: null,
        everConnected: true,
        connectedNow: false,
        disconnectedSinceMs: null,
        disconnectedSinceTicks: null,
        goneSinceMs: gone?.sinceMs ?? null,
        goneSinceTicks: gone?.sinceTicks ?? null,
        goneHow: gone?.how ?? "",
      });
      this.verdicts.set(pair.execId, { kind: "paired", client: k });
    }
  }

  /** One cycle: records what was seen, pairs the execs whose window has closed, and says where each exec's client is. */
  update(cycle: ClientCycle): Map<string, ClientState> {
    this.record(cycle);
    const ready = cycle.canPair ? cycle.execs.filter((e) => !this.verdicts.has(e.execId) && cycle.nowTicks >= e.startTicks + DELAY_TICKS) : [];
    if (ready.length > 0) this.pairAll(ready, cycle.execs, cycle.nowTicks);
    const states = new Map<string, ClientState>();
    for (const exec of cycle.execs) {
      const verdict = this.verdicts.get(exec.execId);
      states.set(
        exec.execId,
        verdict === undefined
          ? unknownClient(`pairing pending: clients are paired ${formatDuration(PAIRING_DELAY_MS)} after their exec starts`)
          : this.stateOf(verdict),
      );
    }
    this.prune(cycle);
    return states;
  }

  private record(cycle: ClientCycle): void {
    const seen = new Set<string>();
    for (const client of this.clients.values()) client.connectedNow = false;
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
          connectedNow: false,
          disconnectedSinceMs: null,
          disconnectedSinceTicks: null,
          goneSinceMs: null,
          goneSinceTicks: null,
          goneHow: "",
        };
        this.clients.set(k, client);
      }
      if (sighting.connected === true) {
        client.everConnected = client.connectedNow = true;
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

  /**
   * Pairs `ready` by elimination over every running exec: each CLI starts one exec, after its own start,
   * so an exec whose other candidates are all needed elsewhere is that one client's. Decided execs keep
   * their constraint; pending ones (still in their delay) take part with their candidates, which have all
   * started by now. Only an exec with the same client in every consistent matching is paired.
   */
  private pairAll(ready: readonly ExecSighting[], execs: readonly ExecSighting[], nowTicks: number): void {
    const candidates = new Map<string, string[]>();
    for (const exec of execs) {
      const verdict = this.verdicts.get(exec.execId);
      const clients = verdict === undefined ? this.candidatesOf(exec) : verdict.kind === "paired" ? [verdict.client] : [...verdict.clients];
      if (clients.length > 0) candidates.set(exec.execId, clients);
    }
    const paired = new Set([...this.verdicts].filter(([, v]) => v.kind === "paired").map(([id]) => id));
    const partners = partnersOf(
      { candidates, committed: this.committed(nowTicks), paired },
      ready.map((e) => e.execId),
    );
    for (const exec of ready) {
      const own = candidates.get(exec.execId) ?? [];
      this.verdicts.set(exec.execId, this.verdictOf(exec, own, partners.get(exec.execId), candidates));
    }
  }

  /** Clients whose exec must be running now: alive, holding their Engine connection, and past their window. */
  private committed(nowTicks: number): Set<string> {
    const out = new Set<string>();
    for (const [k, c] of this.clients) {
      if (c.goneSinceMs === null && c.connectedNow && c.target !== null && nowTicks > c.startTicks + WINDOW_TICKS) out.add(k);
    }
    return out;
  }

  private candidatesOf(exec: ExecSighting): string[] {
    return [...this.clients.entries()].filter(([, c]) => this.isCandidate(c, exec)).map(([k]) => k);
  }

  private verdictOf(
    exec: ExecSighting,
    own: readonly string[],
    partner: ExecPartner | undefined,
    candidates: ReadonlyMap<string, readonly string[]>,
  ): Verdict {
    const unknown = (detail: string): Verdict => ({ kind: "unknown", detail, clients: own });
    if (partner === undefined || own.length === 0)
      return unknown("no local docker CLI client seen (remote, not the CLI, or ended before ptyreaper saw it)");
    if (partner.kind === "tooLarge") return unknown(`${partner.execs} execs could share docker CLI clients: too many to pair`);
    if (partner.kind === "open" || (partner.kind === "impossible" && own.length > 1)) {
      const keys = partner.kind === "open" ? partner.clients : own;
      return unknown(`${keys.length} docker CLI clients could have started it (pids ${keys.map(pidOf).join(", ")})`);
    }
    if (partner.kind === "rival") return unknown(`docker CLI pid ${pidOf(partner.client)} could have started exec ${partner.rival.slice(0, 12)} too`);
    if (partner.kind === "impossible") {
      // One client, and another exec needing it too: one of them was started by a client not seen here.
      const client = own[0] as string;
      const rival = [...candidates].find(([id, keys]) => id !== exec.execId && keys.includes(client));
      return unknown(`docker CLI pid ${pidOf(client)} could have started exec ${(rival?.[0] ?? "another").slice(0, 12)} too`);
    }
    // Proven its client, but not one whose life says anything: the client still counts as taken.
    const client = this.clients.get(partner.client);
    const taken = (detail: string): Verdict => ({ kind: "unknown", detail, clients: [partner.client] });
    if (client === undefined) return taken("client record lost");
    if (client.target === null) return taken(`docker CLI pid ${client.pid}: argv could not be read`);
    if (!client.everConnected)
      return taken(`docker CLI pid ${client.pid} has no connection to this engine's socket (TCP, ssh, or another network namespace)`);
    return { kind: "paired", client: partner.client };
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
