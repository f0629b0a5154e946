// AttributionMemo gives an attribution again only while every process it read is the same facts object.
import { describe, expect, it, vi } from "vitest";
import { AttributionMemo } from "../../../src/domain/runtime-sessions.js";
import { attribute, type ProcessFacts } from "../../../src/domain/attribution.js";
import { facts } from "../support/scan-fixtures.js";

const CID = "e".repeat(64);

/** A containerd shim (k8s.io) above a shell in its container, the shim holding the master. */
function host(): Map<number, ProcessFacts> {
  return new Map([
    [1, facts(1, 0, "systemd", ["/sbin/init"], "0::/init.scope\n")],
    [300, facts(300, 1, "containerd-shim", ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", CID], "0::/\n")],
    [320, facts(320, 300, "sh", ["sh"], `0::/k8s.io/${CID}\n`, 2)],
  ]);
}

describe("AttributionMemo", () => {
  it("gives the same attribution while the holder, the master and every process looked up are the same objects", () => {
    const memo = new AttributionMemo();
    const processes = host();
    const lookup = vi.fn((pid: number) => processes.get(pid));
    const holder = processes.get(320) as ProcessFacts;
    const master = processes.get(300) as ProcessFacts;
    const first = memo.attribute(holder, master, lookup);
    expect(first).toEqual(attribute(holder, master, (pid) => processes.get(pid)));
    expect(first.runtime).toBe("containerd");
    memo.endCycle();
    const second = memo.attribute(holder, master, lookup);
    expect(second).toBe(first);
    memo.endCycle();
    // Unused for a cycle: forgotten.
    memo.endCycle();
    expect(memo.attribute(holder, master, lookup)).not.toBe(first);
  });

  it.each<[string, (processes: Map<number, ProcessFacts>) => void]>([
    ["its parent exec'd (new facts)", (p) => p.set(300, facts(300, 1, "bash", ["bash"], "0::/\n"))],
    ["its parent exited (lookup gives nothing)", (p) => p.delete(300)],
    [
      "an ancestor's argv changed",
      (p) => p.set(300, { ...(p.get(300) as ProcessFacts), argv: ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"] }),
    ],
  ])("attributes again when %s", (_name, change) => {
    const memo = new AttributionMemo();
    const processes = host();
    const holder = processes.get(320) as ProcessFacts;
    const master = processes.get(300) as ProcessFacts;
    const first = memo.attribute(holder, master, (pid) => processes.get(pid));
    memo.endCycle();
    change(processes);
    const again = memo.attribute(holder, master, (pid) => processes.get(pid));
    expect(again).not.toBe(first);
    expect(again).toEqual(attribute(holder, master, (pid) => processes.get(pid)));
  });

  it("attributes again for another master object", () => {
    const memo = new AttributionMemo();
    const processes = host();
    const holder = processes.get(320) as ProcessFacts;
    const first = memo.attribute(holder, processes.get(300) as ProcessFacts, (pid) => processes.get(pid));
    memo.endCycle();
    const other = memo.attribute(holder, null, (pid) => processes.get(pid));
    expect(other).not.toBe(first);
    expect(other).toEqual(attribute(holder, null, (pid) => processes.get(pid)));
  });
});
