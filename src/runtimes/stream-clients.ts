// Pure: follows, cycle to cycle, whether a runtime still holds the stream of each exec to its client
// (containerd CRI, Podman), and turns that into a client state: attached while held, gone from the
// first cycle it was seen released after having been seen held, unknown otherwise.
import { unknownClient, type ClientMemory } from "../domain/client.js";
import type { ClientState } from "../domain/types.js";

/**
 * What one cycle saw of one exec's stream. `held`: the runtime holds its end towards the client.
 * `released`: it no longer does, while the exec's own end is still open. `unknown`: cannot be told.
 * `holder` names the process whose fds were looked at (pid@startTicks): a drop counts only within
 * one holder's life, never across a restart of it.
 */
export type StreamSighting =
  | { execId: string; stream: "held"; holder: string; detail: string }
  | { execId: string; stream: "released"; holder: string; detail: string }
  | { execId: string; stream: "unknown"; detail: string };

interface TrackedStream {
  holder: string;
  goneSinceMs: number | null;
  goneDetail: string;
  /** Restored as held by a previous run that last looked then: a release seen next happened after it, at the latest. */
  unseenSinceMs?: number;
}

export class ExecStreamTracker {
  /** Execs whose stream was seen held, by exec ID. */
  private readonly streams = new Map<string, TrackedStream>();

  /**
   * `neverHeldDetail`: why a release never seen preceded by a hold is `unknown`. `firstSight`, instead: for a
   * runtime where a release proves the client gone even without history (containerd CRI), it is `gone` from
   * the first cycle that saw it, with this detail.
   */
  constructor(
    private readonly neverHeldDetail: string,
    private readonly firstSight: { goneDetail: string } | null = null,
  ) {}

  get size(): number {
    return this.streams.size;
  }

  /** The holder of each exec seen held (now or before its release): the pairing a restart needs. */
  links(): Map<string, string> {
    return new Map([...this.streams].map(([execId, tracked]) => [execId, tracked.holder]));
  }

  /**
   * What a previous run saw, matched to running execs. One recorded held and seen released by the same
   * holder next is gone from `downSinceMs` (that run's last look), not from the first cycle of this one.
   */
  restore(memories: readonly ClientMemory[], downSinceMs: number): void {
    for (const m of memories) {
      if (m.goneSinceMs !== null)
        this.streams.set(m.execId, { holder: m.link, goneSinceMs: m.goneSinceMs, goneDetail: "the client went away before ptyreaper restarted" });
      else this.streams.set(m.execId, { holder: m.link, goneSinceMs: null, goneDetail: "", unseenSinceMs: downSinceMs });
    }
  }

  /**
   * One cycle: `sightings` covers every running exec of the runtime; the rest are forgotten. A release
   * never seen preceded by a hold (ptyreaper started after the client left, or the exec never had a
   * client) proves nothing and stays `unknown`, unless the runtime's rule holds at first sight (firstSight).
   */
  update(sightings: readonly StreamSighting[], nowMs: number): Map<string, ClientState> {
    const states = new Map<string, ClientState>();
    const present = new Set<string>();
    for (const sighting of sightings) {
      present.add(sighting.execId);
      states.set(sighting.execId, this.observe(sighting, nowMs));
    }
    for (const execId of this.streams.keys()) if (!present.has(execId)) this.streams.delete(execId);
    return states;
  }

  private observe(sighting: StreamSighting, nowMs: number): ClientState {
    if (sighting.stream === "unknown") {
      // Nothing learnt this cycle: a gone client stays gone (it cannot come back), anything else is unknown.
      const known = this.streams.get(sighting.execId);
      return known !== undefined && known.goneSinceMs !== null
        ? { state: "gone", sinceMs: known.goneSinceMs, detail: known.goneDetail }
        : unknownClient(sighting.detail);
    }
    let known = this.streams.get(sighting.execId);
    if (known !== undefined && known.holder !== sighting.holder) {
      // Another process now: what the old one held says nothing about this one.
      this.streams.delete(sighting.execId);
      known = undefined;
    }
    if (sighting.stream === "held") {
      // Held again after a release cannot happen with these runtimes; if it does, attached is the safe answer.
      this.streams.set(sighting.execId, { holder: sighting.holder, goneSinceMs: null, goneDetail: "" });
      return { state: "attached", detail: sighting.detail };
    }
    if (known === undefined && this.firstSight !== null) {
      known = { holder: sighting.holder, goneSinceMs: nowMs, goneDetail: `${sighting.detail}: ${this.firstSight.goneDetail}` };
      this.streams.set(sighting.execId, known);
    }
    if (known === undefined) return unknownClient(`${sighting.detail}; ${this.neverHeldDetail}`);
    if (known.goneSinceMs === null) {
      const whileDown = known.unseenSinceMs !== undefined;
      known.goneSinceMs = known.unseenSinceMs ?? nowMs;
      known.goneDetail = whileDown
        ? `${sighting.detail}, after holding it when ptyreaper last looked before its restart: the client went away while ptyreaper was not running`
        : `${sighting.detail}, after holding it: the client went away`;
    }
    return { state: "gone", sinceMs: known.goneSinceMs, detail: known.goneDetail };
  }
}
