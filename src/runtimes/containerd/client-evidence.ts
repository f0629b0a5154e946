// containerd CRI's client evidence: while a CRI exec stream (kubectl exec -it) is attached, containerd
// holds the exec's `<exec-id>-stdout` FIFO; when the stream ends it closes it and the shim keeps its
// own end (observed with containerd 1.6.20). Only k8s.io sessions: other namespaces' clients open the
// FIFOs themselves (ctr, nerdctl), so containerd holding them or not says nothing there.
import { errorMessage, isVanished } from "../../errors.js";
import {
  otherNetworkNamespace,
  socketEvidenceReach,
  unknownClient,
  type ClientEvidence,
  type ClientMemory,
  type ClientObservation,
  type EvidenceReach,
} from "../../domain/client.js";
import type { ClientState } from "../../domain/types.js";
import { ptyKey, type ExecSession, type ProcScan } from "../../domain/types.js";
import { EVIDENCE_READ_BUDGET_MS, FdReadBudget, readFdLinksBounded, type FdReadCut } from "../../procfs/fd-budget.js";
import type { ProcFs } from "../../procfs/procfs.js";
import { serverEndsOf, socketFileId, socketInodes, type UnixPeersReader } from "../../procfs/sockets.js";
import { ExecStreamTracker, type StreamSighting } from "../stream-clients.js";

export const CRI_NAMESPACE = "k8s.io";
/** How long to wait before looking for containerd's process again after it was not found. */
export const DAEMON_SEARCH_EVERY_MS = 60_000;
/**
 * The most fds of containerd (or of a process calling itself containerd) read: a node's containerd holds a
 * few per container (their FIFOs, a shim connection each), and any container process may take its name and
 * hold 500,000. Above this, the process's fds are not read (counted) and its sessions' clients stay unknown.
 */
export const DAEMON_MAX_FDS = 16_384;
/**
 * What one search (once a DAEMON_SEARCH_EVERY_MS at most) may spend reading the candidates' fds, on a budget of
 * its own: the stat of every process before it must not leave it nothing on a host running thousands.
 */
export const DAEMON_SEARCH_BUDGET_MS = 250;

/** Whether an fd link is the CRI stdout FIFO of this exec: `…/io.containerd.grpc.v1.cri/containers/<cid>/io/<n>/<exec-id>-stdout`. */
export function isCriStdoutFifo(link: string, containerId: string, execId: string): boolean {
  const slash = link.lastIndexOf("/");
  if (link.slice(slash + 1) !== `${execId}-stdout`) return false;
  const dir = link.slice(0, slash);
  const io = `/io.containerd.grpc.v1.cri/containers/${containerId}/io/`;
  const at = dir.lastIndexOf(io);
  return at >= 0 && !dir.slice(at + io.length).includes("/");
}

/** The fd links of the two processes that can hold an exec's stdout FIFO, as one cycle read them. */
export interface CriFifoHolders {
  /** containerd's pid@startTicks and its fd links; a string when it could not be found or read. */
  daemon: { key: string; pid: number; links: readonly string[] } | string;
  /** The fd links of the process holding the session's pty master (the shim), or why not read. */
  shimLinks(pid: number): readonly string[] | string;
}

/** Pure: what containerd's and the shim's fds say of one CRI session's stream to its client. */
export function criStreamSighting(
  session: Pick<ExecSession, "execId" | "containerId" | "ptyKey" | "runtimeNamespace">,
  scan: Pick<ProcScan, "ptyFds">,
  holders: CriFifoHolders,
): StreamSighting {
  const { execId, containerId } = session;
  if (session.runtimeNamespace !== CRI_NAMESPACE)
    return {
      execId,
      stream: "unknown",
      detail: `namespace ${session.runtimeNamespace ?? "none"} is not CRI's (${CRI_NAMESPACE}): its clients hold their own FIFOs`,
    };
  const { daemon } = holders;
  if (typeof daemon === "string") return { execId, stream: "unknown", detail: daemon };
  const matches = (link: string): boolean => isCriStdoutFifo(link, containerId, execId);
  if (daemon.links.some(matches))
    return { execId, stream: "held", holder: daemon.key, detail: `containerd pid ${daemon.pid} holds the exec's stdout FIFO for its stream` };
  // containerd does not hold it: a released stream only if the shim still does (else there was no stdout stream at all).
  const masterPids = new Set(
    scan.ptyFds.filter((fd) => fd.role === "master" && ptyKey(fd.devptsDev, fd.index) === session.ptyKey).map((fd) => fd.pid),
  );
  const shim = masterPids.size === 1 ? ([...masterPids][0] as number) : null;
  if (shim === null) return { execId, stream: "unknown", detail: `its pty master is held by ${masterPids.size} processes` };
  const shimLinks = holders.shimLinks(shim);
  if (typeof shimLinks === "string") return { execId, stream: "unknown", detail: shimLinks };
  if (!shimLinks.some(matches))
    return { execId, stream: "unknown", detail: `neither containerd nor the shim (pid ${shim}) holds the exec's stdout FIFO` };
  return {
    execId,
    stream: "released",
    holder: daemon.key,
    detail: `containerd pid ${daemon.pid} does not hold the exec's stdout FIFO (the shim pid ${shim} does)`,
  };
}

export interface CriClientEvidenceOptions {
  procfs: ProcFs;
  /** containerd's gRPC socket (runtimes.containerd.socket): its process is the one that accepted connections on it. */
  socket: string;
  /** sock_diag; null when the native reader is not built (every session is then `unknown`, with this reason). */
  peers: UnixPeersReader | null;
  peersMissingReason?: string;
  /** Told of each read cut by the cap or the cycle's budget (ptyreaper_process_reads_cut_total). */
  readCut?: (reason: FdReadCut) => void;
  /** The clock of the cycle's read budget (tests); performance.now by default. */
  clock?: () => number;
}

export class CriClientEvidence implements ClientEvidence {
  /**
   * Sound at first sight: containerd opens an exec's FIFOs before the shim does and closes its stdout end only
   * when the stream ends (client gone, or containerd restarted, which cuts every stream). Sampled every ~3 ms
   * through 8 CRI exec starts and 4 client kills on containerd 1.6.20: the shim was never seen holding it
   * without containerd while a client was attached. So a release is `gone` from the first cycle that saw it.
   */
  private readonly tracker = new ExecStreamTracker("containerd has not held its stdout FIFO since ptyreaper first saw it", {
    goneDetail: "the stream had ended when ptyreaper first saw it (containerd holds a CRI exec's stdout FIFO for as long as its client is attached)",
  });
  private daemon: { pid: number; startTicks: number } | null = null;
  private lastSearch: { atMs: number; problem: string } | null = null;
  private lastReach: { atMs: number; reach: EvidenceReach } | null = null;

  constructor(private readonly options: CriClientEvidenceOptions) {}

  observe({ scan, view, sessions, nowMs }: ClientObservation): Map<string, ClientState> {
    if (view.available) this.lookAtReach(nowMs);
    if (sessions.length === 0) return this.tracker.update([], nowMs);
    // containerd's links and the shims' of this cycle draw on one budget, started at the first of those reads
    // (after a search for containerd, which has its own: a one-shot `sessions` searches and reads in one cycle).
    let budget: FdReadBudget | null = null;
    const cycleBudget = (): FdReadBudget =>
      (budget ??= new FdReadBudget(DAEMON_MAX_FDS, EVIDENCE_READ_BUDGET_MS, this.options.readCut, this.options.clock));
    const daemon = this.daemonLinks(scan, nowMs, cycleBudget);
    const holders: CriFifoHolders = { daemon, shimLinks: (pid) => this.fdLinks(pid, cycleBudget()) };
    const states = this.tracker.update(
      sessions.map((s) => criStreamSighting(s, scan, holders)),
      nowMs,
    );
    for (const s of sessions) if (!states.has(s.execId)) states.set(s.execId, unknownClient("not observed"));
    return states;
  }

  reach(): EvidenceReach | null {
    return this.lastReach?.reach ?? null;
  }

  links(): Map<string, string> {
    return this.tracker.links();
  }

  restore(memories: readonly ClientMemory[], downSinceMs: number): void {
    this.tracker.restore(memories, downSinceMs);
  }

  /**
   * Once a search period, while containerd answers: does sock_diag show an end of its socket that names its
   * process? From another network namespace that is our own connection's accepted end (accepted sockets
   * live in the client's namespace), so this fails only without the reader or any connection of ours.
   */
  private lookAtReach(nowMs: number): void {
    if (this.lastReach !== null && Math.abs(nowMs - this.lastReach.atMs) < DAEMON_SEARCH_EVERY_MS) return;
    const { peers, socket } = this.options;
    let reach: EvidenceReach;
    try {
      reach =
        peers === null
          ? { available: false, reason: `unix socket peers unreadable: ${this.options.peersMissingReason ?? "no sock_diag reader"}` }
          : socketEvidenceReach(serverEndsOf(peers.read(), socketFileId(socket)).size > 0, socket);
    } catch {
      return; // the socket went away with containerd: nothing learnt about the namespace
    }
    this.lastReach = { atMs: nowMs, reach };
  }

  /** containerd's process and its fd links, or why not. One process's fds per cycle, and only while CRI sessions exist. */
  private daemonLinks(scan: ProcScan, nowMs: number, budget: () => FdReadBudget): CriFifoHolders["daemon"] {
    if (this.daemon !== null && !this.isSame(this.daemon)) this.daemon = null;
    if (this.daemon === null) {
      if (this.lastSearch !== null && nowMs - this.lastSearch.atMs < DAEMON_SEARCH_EVERY_MS) return this.lastSearch.problem;
      const found = this.findDaemon(scan);
      if (typeof found === "string") {
        this.lastSearch = { atMs: nowMs, problem: found };
        return found;
      }
      this.lastSearch = null;
      this.daemon = found;
    }
    const { pid, startTicks } = this.daemon;
    const links = this.fdLinks(pid, budget());
    if (typeof links === "string") return links;
    // Read after the links: a containerd that restarted meanwhile is not taken for the old one.
    if (!this.isSame(this.daemon)) return `containerd pid ${pid} exited while its fds were read`;
    return { key: `${pid}@${startTicks}`, pid, links };
  }

  private isSame(process: { pid: number; startTicks: number }): boolean {
    try {
      const stat = this.options.procfs.stat(process.pid);
      return stat !== null && stat.startTicks === process.startTicks && stat.state !== "Z" && stat.state !== "X";
    } catch {
      return false;
    }
  }

  /**
   * containerd's process: the one `containerd` process holding a connection accepted on the configured
   * socket. Its shims are reparented, so their parent does not name it; the socket does, and another
   * containerd on the host (Docker's own) is told apart by it. Reads every process's stat once per search;
   * a candidate whose fds the cap or the budget left unread is passed over (an impostor with 500,000 fds
   * must not hide the real one), and named when no other is found.
   */
  private findDaemon(scan: ProcScan): { pid: number; startTicks: number } | string {
    const { procfs, socket, peers } = this.options;
    if (peers === null) return `unix socket peers unreadable: ${this.options.peersMissingReason ?? "no sock_diag reader"}`;
    let accepted: Set<number>;
    try {
      accepted = serverEndsOf(peers.read(), socketFileId(socket));
    } catch (err) {
      return `cannot tell which process serves ${socket}: ${errorMessage(err)}`;
    }
    const candidates: { pid: number; startTicks: number }[] = [];
    for (const pid of scan.ppids.keys()) {
      try {
        const stat = procfs.stat(pid);
        if (stat?.comm === "containerd") candidates.push({ pid, startTicks: stat.startTicks });
      } catch (err) {
        if (!isVanished(err)) return `cannot read containerd candidate ${pid}: ${errorMessage(err)}`;
      }
    }
    const budget = new FdReadBudget(DAEMON_MAX_FDS, DAEMON_SEARCH_BUDGET_MS, this.options.readCut, this.options.clock);
    const found: { pid: number; startTicks: number }[] = [];
    const unread: string[] = [];
    for (const candidate of candidates) {
      try {
        const sockets = socketInodes(procfs, candidate.pid, budget);
        if (typeof sockets === "string") unread.push(`${candidate.pid} (${sockets})`);
        else if (sockets.some((ino) => accepted.has(ino))) found.push(candidate);
      } catch (err) {
        if (!isVanished(err)) return `cannot read containerd candidate ${candidate.pid}: ${errorMessage(err)}`;
      }
    }
    if (found.length === 1) return found[0] as { pid: number; startTicks: number };
    if (accepted.size === 0) return otherNetworkNamespace(socket);
    if (found.length === 0 && unread.length > 0)
      return `no containerd process read holds a connection accepted on ${socket}; the fds of ${unread.join(", ")} were not read`;
    return found.length === 0
      ? `no containerd process holds a connection accepted on ${socket}`
      : `${found.length} containerd processes hold connections accepted on ${socket}`;
  }

  /** The links of `pid`'s fds that may be a stdout FIFO (only those are kept), or why they were not read. */
  private fdLinks(pid: number, budget: FdReadBudget): readonly string[] | string {
    try {
      const links = readFdLinksBounded(this.options.procfs, pid, budget, (link) => link.endsWith("-stdout"));
      if (typeof links === "string")
        return `the fds of ${pid} were not read (${links === "fd_cap" ? `more than ${budget.maxFds}` : "the cycle's read budget was spent"})`;
      return links.map(({ link }) => link);
    } catch (err) {
      return isVanished(err) ? `process ${pid} exited` : `cannot read the fds of ${pid}: ${errorMessage(err)}`;
    }
  }
}
