// Pure: which client started each exec, by elimination over one-to-one matchings of execs and the clients that could have started them.

/**
 * Execs, the clients that could have started each, and what else is known. Each client starts one
 * exec, after its own start, so the truth is a matching of this graph (F1). Two further beliefs
 * narrow it down, each from a different fact, and a pairing needs both to agree:
 * - E: every exec with a candidate was started by one of them (its client was seen and is listed);
 * - F: every `committed` client has its exec among these execs (it is alive and attached, so its exec runs).
 * E fails for an exec whose client ptyreaper never saw (remote, or a CLI that lived less than a
 * cycle); F for a CLI whose running exec is not listed (not a session). A wrong pairing needs E to
 * fail somewhere and, besides, F to fail or E to fail for the exec being paired itself. That last
 * case (an exec from an unseen client, started within the window of a CLI whose own exec ended) is
 * accepted only where the CLI could have started no other running exec, as before elimination;
 * elsewhere F must prove the exec has a client at all: attached clients that need it.
 */
export interface PairingGraph {
  /** Each running exec's possible clients (by key). An exec with none is left out: it needs no client. */
  candidates: ReadonlyMap<string, readonly string[]>;
  /** Clients whose exec is known to be running now. */
  committed: ReadonlySet<string>;
  /** Execs already paired (with their one candidate): taken as facts under both beliefs. */
  paired: ReadonlySet<string>;
}

/**
 * What the matchings say about one exec:
 * - `forced`: the same client in every matching under E and under F (elimination: the others are taken);
 * - `open`: more than one client is possible (listed); indistinguishable starts;
 * - `rival`: one client, but it could have started `rival` too, and nothing attached proves this exec has a client;
 * - `impossible`: no matching under E: more execs than clients could have started them, so one exec
 *   was started by a client not seen, and nothing in its group is proven;
 * - `tooLarge`: its group has more execs than are worth solving (see MAX_GROUP_EXECS).
 */
export type ExecPartner =
  | { kind: "forced"; client: string }
  | { kind: "open"; clients: string[] }
  | { kind: "rival"; client: string; rival: string }
  | { kind: "impossible" }
  | { kind: "tooLarge"; execs: number };

/** Groups larger than this are not solved: dozens of identical execs within seconds are not a case to pair. */
export const MAX_GROUP_EXECS = 32;

/** For each exec in `wanted`, what the matchings of its group (execs linked by shared candidates) agree on. */
export function partnersOf(graph: PairingGraph, wanted: readonly string[]): Map<string, ExecPartner> {
  const out = new Map<string, ExecPartner>();
  const groups = groupsOf(graph.candidates);
  for (const execId of wanted) {
    const group = groups.get(execId);
    if (group === undefined) continue; // no candidates: not the caller's question
    if (group.length > MAX_GROUP_EXECS) {
      out.set(execId, { kind: "tooLarge", execs: group.length });
      continue;
    }
    const edges = new Map(group.map((id) => [id, graph.candidates.get(id) ?? []]));
    const clients = new Set(group.flatMap((id) => edges.get(id) ?? []));
    // E: every exec of the group is matched. F: this exec, the paired ones and every committed client are.
    const underE = possibleClients(edges, execId, new Set(group), new Set());
    if (underE.length === 0) {
      out.set(execId, { kind: "impossible" });
      continue;
    }
    const paired = group.filter((id) => graph.paired.has(id) && id !== execId);
    const committed = [...clients].filter((c) => graph.committed.has(c));
    const underF = possibleClients(edges, execId, new Set([execId, ...paired]), new Set(committed));
    if (underE.length === 1 && underF.length === 1 && underE[0] === underF[0]) {
      const client = underE[0] as string;
      const rival = group.find((id) => id !== execId && (edges.get(id) ?? []).includes(client));
      // Under F alone this exec may have no client at all when the others can be matched without it.
      const provenByF = !canMatchWithout(edges, execId, paired, committed);
      out.set(execId, rival === undefined || provenByF ? { kind: "forced", client } : { kind: "rival", client, rival });
    } else {
      out.set(execId, { kind: "open", clients: (edges.get(execId) ?? []).filter((c) => underE.includes(c) || underF.includes(c)) });
    }
  }
  return out;
}

/** Whether every exec of `mustExecs` and client of `mustClients` can be matched with `execId` left out. */
function canMatchWithout(
  edges: ReadonlyMap<string, readonly string[]>,
  execId: string,
  mustExecs: readonly string[],
  mustClients: readonly string[],
): boolean {
  const byClient = clientsToExecs(edges);
  return coversAll(mustExecs, (id) => edges.get(id) ?? []) && coversAll(mustClients, (c) => (byClient.get(c) ?? []).filter((id) => id !== execId));
}

function clientsToExecs(edges: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
  const byClient = new Map<string, string[]>();
  for (const [id, clients] of edges) for (const c of clients) byClient.set(c, [...(byClient.get(c) ?? []), id]);
  return byClient;
}

/**
 * The candidates of `execId` it can be matched with while every exec of `mustExecs` and every client
 * of `mustClients` is matched too. A matching covering both sets exists when one covers each
 * (Mendelsohn–Dulmage), so the two sides are checked apart.
 */
function possibleClients(
  edges: ReadonlyMap<string, readonly string[]>,
  execId: string,
  mustExecs: ReadonlySet<string>,
  mustClients: ReadonlySet<string>,
): string[] {
  const byClient = clientsToExecs(edges);
  return (edges.get(execId) ?? []).filter((client) => {
    const execs = [...mustExecs].filter((id) => id !== execId);
    const clients = [...mustClients].filter((c) => c !== client);
    return (
      coversAll(execs, (id) => (edges.get(id) ?? []).filter((c) => c !== client)) &&
      coversAll(clients, (c) => (byClient.get(c) ?? []).filter((id) => id !== execId))
    );
  });
}

/** Whether one matching covers every vertex of `left` (Kuhn's augmenting paths). */
function coversAll(left: readonly string[], neighbours: (vertex: string) => readonly string[]): boolean {
  const owner = new Map<string, string>();
  const augment = (vertex: string, visited: Set<string>): boolean => {
    for (const other of neighbours(vertex)) {
      if (visited.has(other)) continue;
      visited.add(other);
      const current = owner.get(other);
      if (current === undefined || augment(current, visited)) {
        owner.set(other, vertex);
        return true;
      }
    }
    return false;
  };
  return left.every((vertex) => augment(vertex, new Set()));
}

/** Connected components of execs linked by a shared candidate; each exec maps to its component's exec list. */
function groupsOf(candidates: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let root = x;
    while (parent.get(root) !== root) root = parent.get(root) as string;
    parent.set(x, root);
    return root;
  };
  const byClient = new Map<string, string>();
  for (const [execId, clients] of candidates) {
    if (clients.length === 0) continue;
    if (!parent.has(execId)) parent.set(execId, execId);
    for (const client of clients) {
      const other = byClient.get(client);
      if (other === undefined) byClient.set(client, execId);
      else parent.set(find(other), find(execId));
    }
  }
  const members = new Map<string, string[]>();
  for (const execId of parent.keys()) {
    const root = find(execId);
    members.set(root, [...(members.get(root) ?? []), execId]);
  }
  const out = new Map<string, string[]>();
  for (const list of members.values()) for (const execId of list) out.set(execId, list);
  return out;
}
