// Debian's promtool on our Prometheus files: alert rules checked and unit-tested, dashboard queries parsed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { dashboardExprs, withGrafanaVariablesFilled } from "../production/promql.js";

const CONFIG = new URL("../../config/", import.meta.url).pathname;
const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;

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
    // As many as the file defines (counted here, so adding an alert needs no edit of this test).
    const defined = readFileSync(join(CONFIG, "alerts.yml"), "utf8").match(/^\s*- alert: /gm)?.length ?? 0;
    expect(defined).toBeGreaterThanOrEqual(10);
    expect(output).toContain(`SUCCESS: ${defined} rules found`);
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
            alert_rule_test: [
              {
                eval_time: "20m",
                alertname: "PtyreaperPtyUsageHigh",
                exp_alerts: [{ exp_labels: { severity: "warning", job: "ptyreaper", instance: "a" } }],
              },
            ],
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

  it("check config: the annotation scrape recipe (deploy/prometheus/scrape-config.yml) is a valid Prometheus config", () => {
    // Debian's Prometheus is built without Kubernetes discovery: the recipe's relabelling is checked with
    // static targets in its place (the discovery block itself is the standard pod role, nothing more).
    const recipe = parseYaml(readFileSync(join(DEPLOY, "prometheus/scrape-config.yml"), "utf8")) as { scrape_configs: Record<string, unknown>[] };
    const job = recipe.scrape_configs[0] ?? {};
    expect(job.kubernetes_sd_configs).toEqual([{ role: "pod", namespaces: { names: ["ptyreaper"] } }]);
    const { kubernetes_sd_configs: _pods, ...rest } = job;
    const checked = join(work, "scrape-config.yml");
    writeFileSync(checked, stringify({ scrape_configs: [{ ...rest, static_configs: [{ targets: ["127.0.0.1:9724"] }] }] }));
    const { status, output } = promtool(["check", "config", checked], work);
    expect(output).toContain("SUCCESS");
    expect(status).toBe(0);
  });

  // The job label each shipped scrape path gives the series, read from the shipped files: the PodMonitor's
  // jobLabel names a pod label, the recipe names its job. The alerts must fire on series labelled so.
  it.each([
    [
      "the PodMonitor",
      (): string => {
        const monitor = parseYaml(readFileSync(join(DEPLOY, "kubernetes/podmonitor.yaml"), "utf8")) as { spec: { jobLabel: string } };
        const pod = parseYaml(readFileSync(join(DEPLOY, "kubernetes/daemonset.yaml"), "utf8")) as {
          spec: { template: { metadata: { labels: Record<string, string> } } };
        };
        return pod.spec.template.metadata.labels[monitor.spec.jobLabel] ?? "(no such pod label)";
      },
    ],
    [
      "the annotation recipe",
      (): string =>
        (parseYaml(readFileSync(join(DEPLOY, "prometheus/scrape-config.yml"), "utf8")) as { scrape_configs: { job_name: string }[] })
          .scrape_configs[0]?.job_name ?? "",
    ],
  ])("test rules: the alerts select the series as %s scrapes them", (_path, jobOf) => {
    const job = jobOf();
    const file = join(work, `as-scraped-${job}.test.yml`);
    writeFileSync(
      file,
      stringify({
        rule_files: [join(CONFIG, "alerts.yml")],
        evaluation_interval: "1m",
        tests: [
          {
            interval: "1m",
            input_series: [
              { series: `ptyreaper_pty_usage_ratio{job="${job}", instance="10.0.0.7:9724"}`, values: "0.85x30" },
              { series: `up{job="${job}", instance="10.0.0.8:9724"}`, values: "0x30" },
            ],
            // Which series each alert selects (ALERTS), not its wording: config/alerts.test.yml checks that.
            promql_expr_test: [
              {
                expr: 'ALERTS{alertstate="firing", alertname=~"PtyreaperPtyUsageHigh|PtyreaperDown"}',
                eval_time: "20m",
                exp_samples: [
                  {
                    labels: `ALERTS{alertname="PtyreaperDown", alertstate="firing", severity="warning", job="${job}", instance="10.0.0.8:9724"}`,
                    value: 1,
                  },
                  {
                    labels: `ALERTS{alertname="PtyreaperPtyUsageHigh", alertstate="firing", severity="warning", job="${job}", instance="10.0.0.7:9724"}`,
                    value: 1,
                  },
                ],
              },
            ],
          },
        ],
      }),
    );
    const { status, output } = promtool(["test", "rules", file], work);
    expect(output).toContain("SUCCESS");
    expect(status).toBe(0);
  });
});
