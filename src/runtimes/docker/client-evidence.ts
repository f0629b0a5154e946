// Docker's client evidence: finds the local `docker exec` CLI processes in /proc, checks with sock_diag
// which of them hold a connection to this engine's socket, and feeds the tracker (clients.ts).
import type { Logger } from "pino";
import { errorMessage, isVanished } from "../../errors.js";
import {
  parseLink,
  socketEvidenceReach,
  unknownClient,
  type ClientEvidence,
  type ClientMemory,
  type ClientObservation,
  type EvidenceReach,
} from "../../domain/client.js";
import type { ClientState } from "../../domain/types.js";
import { CLOCK_TICKS_PER_SECOND } from "../../domain/inventory.js";
import type { ProcInfo } from "../../domain/types.js";
import type { ProcFs } from "../../procfs/procfs.js";
import { EVIDENCE_READ_BUDGET_MS, FdReadBudget, type FdReadCut } from "../../procfs/fd-budget.js";
import {
  listensOn,
  loadUnixPeersReader,
  socketFileId,
  socketInodes,
  type SocketFileId,
  type UnixPeerTable,
  type UnixPeersReader,
} from "../../procfs/sockets.js";
import { isDockerCli, parseDockerCli, type DockerCliCommand } from "./cli-args.js";
import { DockerClientTracker, type ClientSighting, type ClientTarget, type ExecSighting, type RestoredPair } from "./clients.js";

export interface DockerClientEvidenceOptions {
  procfs: ProcFs;
  /** sock_diag; null when the native reader is not built (every session is then `unknown`, with this reason). */
  peers: UnixPeersReader | null;
  peersMissingReason?: string;
  /** The Engine API socket (config docker.socket): a client counts only when connected to this file. */
  engineSocket: string;
  /** Told of each would-be client whose fds were left unread (ptyreaper_process_reads_cut_total). */
  readCut?: (reason: FdReadCut) => void;
  /** The clock of the cycle's read budget (tests); performance.now by default. */
  clock?: () => number;
}

/**
 * A docker CLI holds a dozen fds; any process may call itself `docker exec -it x sh` and hold 500,000. Its
 * fd count is one stat (Linux 6.2 and later; before, the listing stops past it): above this, its fds are
 * not read and its session's client stays unknown, however many cycles it lives. Every would-be client of a
 * cycle shares one time budget (EVIDENCE_READ_BUDGET_MS): 10,000 of them holding 60 fds each are cut there.
 */
export const CLI_MAX_FDS = 64;

/** A CLI process found this cycle, before its sockets are resolved. */
interface Found {
  pid: number;
  startTicks: number;
  target: ClientTarget | null;
  /** null: its fds could not be read. */
  sockets: number[] | null;
}

export class DockerClientEvidence implements ClientEvidence {
  private readonly tracker = new DockerClientTracker();
  private lastReach: EvidenceReach | null = null;

  constructor(private readonly options: DockerClientEvidenceOptions) {}

  observe({ scan, view, sessions, nowMs }: ClientObservation): Map<string, ClientState> {
    // Without Docker's view there are no execs to pair: keep what the tracker knows for the next cycle.
    if (!view.available) return new Map();
    const commands = new Map(view.execs.map((e) => [e.id, e.command ?? []]));
    const execs: ExecSighting[] = sessions.map((s) => ({
      execId: s.execId,
      containerId: s.containerId,
      containerName: s.containerName.replace(/^\//, ""),
      command: commands.get(s.execId) ?? [],
      startTicks: s.startTicks,
    }));
    // Sockets are listed before the peer table is read: a connection listed then is in the table if it still exists.
    const budget = new FdReadBudget(CLI_MAX_FDS, EVIDENCE_READ_BUDGET_MS, this.options.readCut, this.options.clock);
    const found = this.findClients(scan.processes, budget);
    const { table, problem } = this.readPeers();
    const clients: ClientSighting[] = found.map((f) => ({
      pid: f.pid,
      startTicks: f.startTicks,
      target: f.target,
      connected: table === null || f.sockets === null ? null : f.sockets.some((ino) => isEngineConnection(table.peers, table.engine, ino)),
    }));
    const nowTicks = ((nowMs - scan.bootTimeSec * 1000) * CLOCK_TICKS_PER_SECOND) / 1000;
    const states = this.tracker.update({ nowMs, nowTicks, execs, clients, canPair: table !== null });
    if (problem === null) return states;
    // Exits are still followed; what needs the peers cannot be decided.
    for (const [execId, state] of states) if (state.state === "unknown") states.set(execId, unknownClient(problem));
    return states;
  }

  links(): Map<string, string> {
    return this.tracker.links();
  }

  /**
   * Pairings a previous run proved: a client that still lives is followed again; one that exited (or
   * whose pid now names another process) while ptyreaper was down is gone from `downSinceMs` at the latest.
   */
  restore(memories: readonly ClientMemory[], downSinceMs: number, { scan }: ClientObservation): void {
    const toTicks = (ms: number): number => ((ms - scan.bootTimeSec * 1000) * CLOCK_TICKS_PER_SECOND) / 1000;
    const pairs: RestoredPair[] = [];
    for (const memory of memories) {
      const client = parseLink(memory.link);
      if (client === null) continue;
      let gone: RestoredPair["gone"] = null;
      if (memory.goneSinceMs !== null)
        gone = { sinceMs: memory.goneSinceMs, sinceTicks: toTicks(memory.goneSinceMs), how: "was gone before ptyreaper restarted" };
      else if (!this.isSameProcess(client.pid, client.startTicks))
        gone = { sinceMs: downSinceMs, sinceTicks: toTicks(downSinceMs), how: "exited while ptyreaper was not running" };
      pairs.push({ execId: memory.execId, ...client, gone });
    }
    this.tracker.restore(pairs);
  }

  /** docker exec CLIs holding a pty (an -it client holds its terminal), plus tracked ones the scan no longer lists. */
  private findClients(processes: ReadonlyMap<number, ProcInfo>, budget: FdReadBudget): Found[] {
    const found: Found[] = [];
    const listed = new Set<string>();
    for (const info of processes.values()) {
      if (!isDockerCli(info.cmdline, info.comm)) continue;
      const target = targetOf(parseDockerCli(info.cmdline));
      if (target === undefined) continue;
      const sockets = this.socketsOf(info.pid, budget);
      if (sockets === "gone") continue;
      listed.add(`${info.pid}@${info.startTicks}`);
      found.push({ pid: info.pid, startTicks: info.startTicks, target, sockets });
    }
    for (const { pid, startTicks } of this.tracker.livePids()) {
      if (listed.has(`${pid}@${startTicks}`) || !this.isSameProcess(pid, startTicks)) continue;
      const sockets = this.socketsOf(pid, budget);
      // The target was recorded when first seen; the tracker keeps it.
      if (sockets !== "gone") found.push({ pid, startTicks, target: null, sockets });
    }
    return found;
  }

  private isSameProcess(pid: number, startTicks: number): boolean {
    try {
      const stat = this.options.procfs.stat(pid);
      // Malformed stat text proves nothing: only a readable, different or dead process is gone.
      if (stat === null) return true;
      return stat.startTicks === startTicks && stat.state !== "Z" && stat.state !== "X";
    } catch (err) {
      // Unreadable but present: not proven gone, so still alive as far as the tracker is concerned.
      return !isVanished(err);
    }
  }

  /** null: not read (denied, or cut by the cap or the cycle's budget: counted there). */
  private socketsOf(pid: number, budget: FdReadBudget): number[] | null | "gone" {
    try {
      const sockets = socketInodes(this.options.procfs, pid, budget);
      return typeof sockets === "string" ? null : sockets;
    } catch (err) {
      return isVanished(err) ? "gone" : null;
    }
  }

  reach(): EvidenceReach | null {
    return this.lastReach;
  }

  private readPeers(): { table: { peers: UnixPeerTable; engine: SocketFileId } | null; problem: string | null } {
    const { peers, engineSocket } = this.options;
    if (peers === null) {
      const problem = `unix socket peers unreadable: ${this.options.peersMissingReason ?? "no sock_diag reader"}`;
      this.lastReach = { available: false, reason: problem };
      return { table: null, problem };
    }
    try {
      const table = { peers: peers.read(), engine: socketFileId(engineSocket) };
      this.lastReach = socketEvidenceReach(listensOn(table.peers, table.engine), engineSocket);
      // No connection is provable from here: not one client may be taken for gone.
      if (!this.lastReach.available) return { table: null, problem: this.lastReach.reason };
      return { table, problem: null };
    } catch (err) {
      return { table: null, problem: `cannot tell which clients are connected to ${engineSocket}: ${errorMessage(err)}` };
    }
  }
}

/** Docker's client evidence on this host; without the sock_diag reader every client stays `unknown` (logged). */
export function dockerClientEvidence(
  procfs: ProcFs,
  engineSocket: string,
  logger?: Logger,
  readCut?: DockerClientEvidenceOptions["readCut"],
): DockerClientEvidence {
  const peers = loadUnixPeersReader();
  if (peers.reader === null)
    logger?.warn({ reason: peers.reason }, "unix socket peers unreadable: exec clients stay unknown, only the idle policy applies");
  return new DockerClientEvidence({
    procfs,
    peers: peers.reader,
    peersMissingReason: peers.reason ?? undefined,
    engineSocket,
    ...(readCut ? { readCut } : {}),
  });
}

/** A tty exec's target; null for an argv that may be an exec but cannot be read; undefined when not a possible client. */
function targetOf(command: DockerCliCommand): ClientTarget | null | undefined {
  if (command.kind === "unreadable") return null;
  if (command.kind === "exec" && command.tty) return { container: command.container, command: command.command };
  return undefined;
}

/** Whether socket `ino` is connected to a socket accepted on the engine's socket file. */
export function isEngineConnection(peers: UnixPeerTable, engine: SocketFileId, ino: number): boolean {
  const own = peers.get(ino);
  if (own === undefined) return false;
  const file = peers.get(own.peer)?.file;
  return file !== undefined && file !== null && file.dev === engine.dev && file.ino === engine.ino;
}
