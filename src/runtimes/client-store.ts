// Client evidence that survives a restart: each cycle's known client states and pairings, written to the
// state directory, and given back to each runtime's evidence at the first cycle that lists its sessions.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import { errorMessage } from "../errors.js";
import { matchRecords, recordsOf, type ClientEvidence, type ClientObservation, type ClientRecord, type EvidenceReach } from "../domain/client.js";
import type { ClientState } from "../domain/types.js";

export const STATE_FILE = "clients.json";
const FORMAT_VERSION = 1;
/** Larger is not a file this daemon wrote (a record is ~150 bytes, and sessions are bounded by ptys). */
export const MAX_STATE_FILE_BYTES = 8 * 1024 * 1024;
/**
 * An unchanged file is written again this often, so its time stays close to the start of a downtime
 * (a crash included): a client recorded attached and gone at restart is gone from that time at the latest.
 */
export const REWRITE_EVERY_MS = 60_000;

const recordSchema = z.object({
  runtime: z.string().min(1).max(32),
  execId: z.string().min(1).max(256),
  pid: z.number().int().positive(),
  startTicks: z.number().int().nonnegative(),
  link: z.string().min(1).max(64),
  goneSinceMs: z.number().nullable(),
});
const fileSchema = z.object({ version: z.number().int(), writtenAtMs: z.number(), records: z.array(recordSchema) });

/** What a state file held: its records and when it was written; empty when missing, stale or corrupt (`problem` says which). */
export interface LoadedState {
  records: ClientRecord[];
  writtenAtMs: number;
  problem: { kind: "missing" | "stale" | "corrupt"; detail: string } | null;
}

/** Reads the state file; never throws: whatever cannot be used is no record at all, so every session starts `unknown`. */
export function loadClientState(dir: string, nowMs: number): LoadedState {
  const path = join(dir, STATE_FILE);
  const none = (kind: "missing" | "stale" | "corrupt", detail: string): LoadedState => ({
    records: [],
    writtenAtMs: nowMs,
    problem: { kind, detail },
  });
  let text: string;
  try {
    if (statSync(path).size > MAX_STATE_FILE_BYTES) return none("corrupt", `larger than ${MAX_STATE_FILE_BYTES} bytes`);
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return none(code === "ENOENT" ? "missing" : "corrupt", errorMessage(err));
  }
  let parsed: z.infer<typeof fileSchema>;
  try {
    const result = fileSchema.safeParse(JSON.parse(text));
    if (!result.success) return none("corrupt", `not a ptyreaper state file: ${result.error.issues[0]?.message ?? "bad shape"}`);
    parsed = result.data;
  } catch (err) {
    return none("corrupt", `not JSON: ${errorMessage(err)}`);
  }
  if (parsed.version !== FORMAT_VERSION) return none("stale", `format version ${parsed.version}, this daemon reads ${FORMAT_VERSION}`);
  // A clock that went back must not date a downtime in the future.
  return { records: parsed.records, writtenAtMs: Math.min(parsed.writtenAtMs, nowMs), problem: null };
}

/** Writes `text` to `path` atomically: a temporary file in the same directory, fsync'd, then renamed over it. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  // The rename itself is durable once the directory is synced.
  const dirFd = openSync(join(path, ".."), "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

export interface ClientStateStoreOptions {
  /** The state directory (config stateDir); created when missing. */
  dir: string;
  logger: Logger;
  nowMs: number;
}

/** The state file of one daemon: loaded once at start, written after cycles. */
export class ClientStateStore {
  private readonly loaded: LoadedState;
  /** Runtimes whose loaded records were not yet given back: until then their records are kept as loaded. */
  private readonly pending: Set<string>;
  private readonly current = new Map<string, ClientRecord[]>();
  private last: { text: string; atMs: number } | null = null;
  private failing = false;

  constructor(private readonly options: ClientStateStoreOptions) {
    this.loaded = loadClientState(options.dir, options.nowMs);
    this.pending = new Set(this.loaded.records.map((r) => r.runtime));
    const { problem } = this.loaded;
    if (problem?.kind === "corrupt") {
      options.logger.warn(
        { file: join(options.dir, STATE_FILE), problem: problem.detail },
        "client state file unreadable: every exec client starts unknown (it is rewritten after the first cycle)",
      );
    } else if (problem?.kind === "stale") {
      options.logger.info(
        { file: join(options.dir, STATE_FILE), problem: problem.detail },
        "client state file not used: every exec client starts unknown",
      );
    } else if (problem === null) {
      options.logger.info(
        { records: this.loaded.records.length, writtenAt: new Date(this.loaded.writtenAtMs).toISOString() },
        "client state file loaded",
      );
    }
  }

  /** `evidence`, with its sessions' clients restored at its first look and remembered after each one. */
  remembering(runtime: string, evidence: ClientEvidence): ClientEvidence {
    return new RememberedEvidence(runtime, evidence, this);
  }

  /** The loaded records of `runtime` that still describe a running session, once: null after that (or when there are none). */
  takeBack(runtime: string, observation: ClientObservation): { memories: ReturnType<typeof matchRecords>; downSinceMs: number } | null {
    if (!this.pending.has(runtime)) return null;
    // Until the runtime answers, its sessions are not listed: wait rather than take every record for stale.
    if (observation.sessions.length === 0 && !observation.view.available) return null;
    this.pending.delete(runtime);
    return { memories: matchRecords(this.loaded.records, runtime, observation.sessions), downSinceMs: this.loaded.writtenAtMs };
  }

  /** This cycle's records of `runtime` (replacing its last ones). */
  remember(runtime: string, records: ClientRecord[]): void {
    if (!this.pending.has(runtime)) this.current.set(runtime, records);
  }

  /**
   * Writes the file when its records changed, or every REWRITE_EVERY_MS (and with `force`, at stop). A
   * failure is logged once until a write succeeds again; the daemon goes on without the file.
   */
  save(nowMs: number, force = false): void {
    const records = [...this.pending].flatMap((runtime) => this.loaded.records.filter((r) => r.runtime === runtime));
    for (const list of this.current.values()) records.push(...list);
    const body = JSON.stringify(records);
    const due = force || this.last === null || this.last.text !== body || nowMs - this.last.atMs >= REWRITE_EVERY_MS;
    if (!due || (records.length === 0 && this.keepsNothing(body))) return;
    try {
      mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
      writeFileAtomic(join(this.options.dir, STATE_FILE), `${JSON.stringify({ version: FORMAT_VERSION, writtenAtMs: nowMs, records })}\n`);
      this.last = { text: body, atMs: nowMs };
      if (this.failing) this.options.logger.info({ dir: this.options.dir }, "client state file written again");
      this.failing = false;
    } catch (err) {
      if (!this.failing)
        this.options.logger.warn(
          { dir: this.options.dir, err: errorMessage(err) },
          "cannot write the client state file: exec clients will start unknown after a restart",
        );
      this.failing = true;
    }
  }

  /** Whether the file on disk already holds no record (or there is none): an empty list need not be rewritten. */
  private keepsNothing(body: string): boolean {
    return this.last === null ? this.loaded.problem?.kind === "missing" : this.last.text === body;
  }
}

/** One runtime's evidence, given back what the last run knew and remembering what this one knows. */
class RememberedEvidence implements ClientEvidence {
  constructor(
    private readonly runtime: string,
    private readonly inner: ClientEvidence,
    private readonly store: ClientStateStore,
  ) {}

  observe(observation: ClientObservation): Map<string, ClientState> {
    const back = this.store.takeBack(this.runtime, observation);
    if (back !== null && back.memories.length > 0) this.inner.restore?.(back.memories, back.downSinceMs, observation);
    const states = this.inner.observe(observation);
    // A runtime that did not answer lists no session: its records are kept, not emptied.
    if (!observation.view.available && observation.sessions.length === 0) return states;
    this.store.remember(this.runtime, recordsOf(this.runtime, observation.sessions, states, this.inner.links?.() ?? new Map<string, string>()));
    return states;
  }

  reach(): EvidenceReach | null {
    return this.inner.reach();
  }
}
