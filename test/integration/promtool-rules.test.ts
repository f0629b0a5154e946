// Debian's promtool on our Prometheus files: alert rules checked and unit-tested, dashboard queries parsed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { dashboardExprs, withGrafanaVariablesFilled } from "../production/promql.js";

const CONFIG = new URL("../../config/", import.meta.url).pathname;

function promtool(args: string[], cwd = CONFIG): { status: number | null; output: string } {
  const found = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  if (found.status !== 0) throw new Error("promtool is missing: install the prometheus package (sudo bash scripts/provision-test-host.sh)");
  const result = spawnSync(found.stdout.trim(), args, { cwd, encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const work = mkdtempSync(join(tmpdir(), "ptyreaper-promtool-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Each query as a recording rule: `promtool check rules` then parses it with Prometheus's own parser. */
function recordingRules(exprs: string[]): string {
  const path = join(work, `queries-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(path, stringify({ groups: [{ name: "dashboard", rules: exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr })) }] }));
  return path;
}

describe("promtool", () => {
  it("check rules: config/alerts.yml is valid", () => {
    const { status, output } = promtool(["check", "rules", "alerts.yml"]);
    // Every rule of the file is found (counted from the file, so adding an alert needs no edit here).
    const alerts = readFileSync(join(CONFIG, "alerts.yml"), "utf8").match(/^\s*- alert: /gm)?.length ?? 0;
    expect(alerts).toBeGreaterThan(0);
    expect(output).toContain(`SUCCESS: ${alerts} rules found`);
    expect(status).toBe(0);
  });

  it("test rules: every alert fires and stays silent as config/alerts.test.yml expects", () => {
    const { status, output } = promtool(["test", "rules", "alerts.test.yml"]);
    expect(output).toContain("SUCCESS");
    expect(output).not.toContain("FAILED");
    expect(status).toBe(0);
  });

  it("test rules fails when an expectation is wrong (so the pass above means something)", () => {
    const wrong = join(work, "wrong.test.yml");
    writeFileSync(
      wrong,
      stringify({
        rule_files: [join(CONFIG, "alerts.yml")],
        evaluation_interval: "1m",
        tests: [
          {
            interval: "1m",
            input_series: [{ series: 'ptyreaper_pty_usage_ratio{job="ptyreaper", instance="a"}', values: "0.5x30" }],
            alert_rule_test: [{ eval_time: "20m", alertname: "PtyreaperPtyUsageHigh", exp_alerts: [{ exp_labels: { severity: "warning", job: "ptyreaper", instance: "a" } }] }],
          },
        ],
      }),
    );
    const { status, output } = promtool(["test", "rules", wrong], work);
    expect(output).toContain("FAILED");
    expect(status).not.toBe(0);
  });

  it("check rules: every dashboard query is valid PromQL", () => {
    const exprs = dashboardExprs().map((q) => withGrafanaVariablesFilled(q.expr));
    expect(exprs.length).toBeGreaterThan(10);
    const { status, output } = promtool(["check", "rules", recordingRules(exprs)], work);
    expect(output).toContain(`SUCCESS: ${exprs.length} rules found`);
    expect(status).toBe(0);
  });

  it("check rules rejects a malformed query (so the check above means something)", () => {
    const { status, output } = promtool(["check", "rules", recordingRules(["sum by (le (rate(x[5m]))"])], work);
    expect(output).toMatch(/parse error|unexpected/i);
    expect(status).not.toBe(0);
  });
});
