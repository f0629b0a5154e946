// The daemon's wiring of the scan budget: cut passes counted on every cycle, logged once per episode; the reader labelled.
import { fileURLToPath } from "node:url";
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createDaemon, type Scanner } from "../../src/app.js";
import { defaultConfig } from "../../src/config/load.js";
import type { ProcScan } from "../../src/domain/types.js";
import { emptyScan } from "../../src/procfs/scan.js";

const MIXED_HOST = fileURLToPath(new URL("../fixtures/proc/mixed-host", import.meta.url));

function scanResult(cut: boolean): ProcScan & { mode: "full" | "incremental" } {
  // A cut pass here is a steady one; the others full: the cycles' scans are counted by pass.
  return { ...emptyScan(1_700_000_000, {}), ...(cut ? { cut: { unread: 42 } } : {}), mode: cut ? "incremental" : "full" };
}

describe("createDaemon: scan passes cut by their budget", () => {
  it("counts every cut pass, and logs once when an episode begins and once when it ends", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const cuts = [true, true, false, false, true];
    const scanner: Scanner = { scan: () => scanResult(cuts.shift() ?? false), close: () => Promise.resolve() };
    const config = { ...defaultConfig(), procRoot: MIXED_HOST, docker: { ...defaultConfig().docker, enabled: false } };
    const daemon = createDaemon({ config, logger: pino({ level: "info" }, sink), version: "test", scanner, sendSignal: () => undefined });
    for (let cycle = 0; cycle < 5; cycle++) expect(await daemon.runOnce()).not.toBeNull();
    await daemon.stop();

    const exposition = (await daemon.metrics.exposition()).body;
    expect(exposition).toMatch(/^ptyreaper_scan_passes_cut_total 3$/m);
    expect(exposition).toMatch(/^ptyreaper_scans_total\{pass="steady"\} 3$/m);
    expect(exposition).toMatch(/^ptyreaper_scans_total\{pass="full"\} 2$/m);
    expect(exposition).toMatch(
      /^ptyreaper_scan_info\{reader="js",reason=".*mixed-host is not a procfs",finder="none",finder_reason="",listing="all_pids",listing_reason="no pass yet"\} 1$/m,
    );
    const said = lines.filter((line) => line.component === "scan").map((line) => [line.level, line.msg, line.unread]);
    expect(said).toEqual([
      [40, "/proc pass cut by its time budget: unread processes keep their last known state until a later pass", 42],
      [30, "/proc passes complete within their budget again", undefined],
      [40, "/proc pass cut by its time budget: unread processes keep their last known state until a later pass", 42],
    ]);
  });
});
