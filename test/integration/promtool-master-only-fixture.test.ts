// promtool on what the daemon exposes over the containerd-shim-masters /proc fixture: twenty shim-held masters fire PtyreaperRuntimeHeldPtysGrowing.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { shimMastersDaemon, SHIM_MASTERS } from "../unit/support/shim-masters-daemon.js";

const ALERTS = new URL("../../config/alerts.yml", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "ptyreaper-promtool-master-only-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every ptyreaper_master_only_ptys series of an exposition, as a promtool input selector with job and instance. */
function masterOnlySeries(exposition: string): { series: string; value: number }[] {
  const found: { series: string; value: number }[] = [];
  for (const line of exposition.split("\n")) {
    const match = /^ptyreaper_master_only_ptys\{(.*)\} (\S+)$/.exec(line);
    if (match)
      found.push({ series: `ptyreaper_master_only_ptys{job="ptyreaper", instance="fixture:9724", ${match[1] ?? ""}}`, value: Number(match[2]) });
  }
  return found;
}

describe("the containerd-shim-masters fixture through the daemon and promtool", () => {
  it("exposes twenty shim-held master-only ptys, and the alert fires on them after 90 minutes (and on nothing else)", async () => {
    const fixture = shimMastersDaemon();
    try {
      await fixture.daemon.poller.runOnce();
      fixture.advance(61_000);
      await fixture.daemon.poller.runOnce();
      const series = masterOnlySeries((await fixture.daemon.metrics.exposition()).body);
      expect(series.filter((s) => s.value > 0)).toEqual([
        {
          series: 'ptyreaper_master_only_ptys{job="ptyreaper", instance="fixture:9724", runtime="containerd",holder="containerd-shim"}',
          value: SHIM_MASTERS,
        },
      ]);

      // The count stays as exposed (the shim keeps its masters): scraped every minute for 2.5 hours.
      const testFile = join(work, "fixture.test.yml");
      writeFileSync(
        testFile,
        stringify({
          rule_files: [ALERTS],
          evaluation_interval: "1m",
          tests: [
            {
              interval: "1m",
              input_series: series.map((s) => ({ series: s.series, values: `${s.value}x150` })),
              alert_rule_test: [
                { eval_time: "80m", alertname: "PtyreaperRuntimeHeldPtysGrowing", exp_alerts: [] },
                {
                  eval_time: "100m",
                  alertname: "PtyreaperRuntimeHeldPtysGrowing",
                  exp_alerts: [
                    {
                      exp_labels: {
                        severity: "warning",
                        job: "ptyreaper",
                        instance: "fixture:9724",
                        runtime: "containerd",
                        holder: "containerd-shim",
                      },
                      exp_annotations: {
                        summary: "20 ptys on fixture:9724 are held only by containerd's containerd-shim.",
                        description:
                          "On fixture:9724, 20 ptys have only their master open, held by containerd's containerd-shim, with no process on the slave end; for 90 minutes the count has kept growing or stayed at 20 or more. No exec session explains them and ptyreaper never signals a runtime's process: a runtime bug holds them, and they count against kernel.pty.max.",
                        runbook_url: "https://github.com/ptyreaper/ptyreaper#runbook-ptyreaperruntimeheldptysgrowing",
                      },
                    },
                  ],
                },
              ],
            },
          ],
        }),
      );
      const found = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
      if (found.status !== 0) throw new Error("promtool is missing: install the prometheus package (sudo bash scripts/provision-test-host.sh)");
      const result = spawnSync(found.stdout.trim(), ["test", "rules", testFile], { cwd: work, encoding: "utf8" });
      const output = `${result.stdout}${result.stderr}`;
      expect(output, output).toContain("SUCCESS");
      expect(result.status).toBe(0);
    } finally {
      await fixture.daemon.stop();
    }
  });
});
