// EvidenceReachReporter: says once when a runtime's client evidence cannot reach its clients, and once when it can again.
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { ClientEvidence, EvidenceReach } from "../../../src/domain/client.js";
import type { RuntimeName } from "../../../src/domain/attribution.js";
import { EvidenceReachReporter } from "../../../src/runtimes/client-evidence.js";

function evidenceWith(reach: () => EvidenceReach | null): ClientEvidence {
  return { observe: () => new Map(), reach };
}

describe("EvidenceReachReporter", () => {
  it("sets the metric and warns once per change, never before the reach is known", () => {
    const logged: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });
    const lines = () => logged;
    const set: [RuntimeName, boolean][] = [];
    const reporter = new EvidenceReachReporter({ logger, setAvailable: (runtime, available) => set.push([runtime, available]) });
    let reach: EvidenceReach | null = null;
    const docker = evidenceWith(() => reach);
    const podman = evidenceWith(() => ({ available: true }));

    reporter.report([
      ["docker", docker],
      ["podman", podman],
    ]);
    expect(set).toEqual([["podman", true]]);
    reach = { available: false, reason: "sock_diag shows no connection accepted on /var/run/docker.sock" };
    for (let cycle = 0; cycle < 3; cycle++)
      reporter.report([
        ["docker", docker],
        ["podman", podman],
      ]);
    expect(set).toEqual([
      ["podman", true],
      ["docker", false],
    ]);
    reach = { available: true };
    reporter.report([["docker", docker]]);
    expect(set.at(-1)).toEqual(["docker", true]);

    const said = lines()
      .filter((l) => l.runtime === "docker")
      .map((l) => [l.level, l.msg, l.reason]);
    expect(said).toEqual([
      [
        40,
        "docker exec clients cannot be seen from here: they stay unknown and orphanGrace does not apply to docker sessions (only the idle policy)",
        "sock_diag shows no connection accepted on /var/run/docker.sock",
      ],
      [30, "docker exec clients can be seen again: orphanGrace applies", undefined],
    ]);
    // A runtime seen available from the start is not announced.
    expect(lines().filter((l) => l.runtime === "podman")).toEqual([]);
  });
});
