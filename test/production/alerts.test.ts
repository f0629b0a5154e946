// config/alerts.yml against the metrics ptyreaper exposes, its promtool unit tests and the README's runbooks.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { exposedMetricNames, metricNamesIn } from "./promql.js";

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleTest {
  alert_rule_test?: { alertname: string; exp_alerts?: unknown[] | null }[];
}

const rules = (parse(read("config/alerts.yml")) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);
const ruleTests = (parse(read("config/alerts.test.yml")) as { tests: RuleTest[] }).tests.flatMap((t) => t.alert_rule_test ?? []);

/** GitHub's heading anchors: lower case, punctuation dropped, each space a hyphen. */
export function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function readmeAnchors(): Set<string> {
  const anchors = new Set<string>();
  let inFence = false;
  for (const line of read("README.md").split("\n")) {
    if (line.startsWith("```")) inFence = !inFence;
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    if (!inFence && heading?.[1]) anchors.add(githubSlug(heading[1]));
  }
  return anchors;
}

describe("githubSlug", () => {
  it.each([
    ["Runbook: PtyreaperPtyUsageHigh", "runbook-ptyreaperptyusagehigh"],
    ["Quick start", "quick-start"],
    ["`ptyreaper sessions`", "ptyreaper-sessions"],
    ["How it works (kernel facts)", "how-it-works-kernel-facts"],
  ])("%s → %s", (heading, slug) => {
    expect(githubSlug(heading)).toBe(slug);
  });
});

describe("metricNamesIn", () => {
  it.each([
    ['ptyreaper_pty_usage_ratio{job="ptyreaper"} > 0.8', ["ptyreaper_pty_usage_ratio"]],
    ['absent(up{job="ptyreaper"})', ["up"]],
    [
      'histogram_quantile(0.9, sum by (le) (rate(ptyreaper_poll_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))',
      ["ptyreaper_poll_duration_seconds_bucket"],
    ],
    ["predict_linear(a_b[6h], 4 * 3600) / (c - d) > 1 and e > 0.5", ["a_b", "c", "d", "e"]],
    ["x offset 5m unless on (instance) group_left (owner) y", ["x", "y"]],
  ])("%s", (expr, names) => {
    expect(metricNamesIn(expr).sort()).toEqual([...names].sort());
  });
});

describe("config/alerts.yml", () => {
  let exposed: Set<string>;
  beforeAll(async () => {
    exposed = await exposedMetricNames();
  });

  it("has the alerts the runbooks describe", () => {
    expect(rules.map((r) => r.alert).sort()).toEqual(
      [
        "PtyreaperConfigReloadFailed",
        "PtyreaperContainerHoldsManyPtys",
        "PtyreaperDockerUnreachable",
        "PtyreaperDown",
        "PtyreaperPollsStale",
        "PtyreaperPtyExhaustionForecast",
        "PtyreaperPtyUsageCritical",
        "PtyreaperPtyUsageHigh",
        "PtyreaperReapFailing",
        "PtyreaperRuntimeUnreachable",
        "PtyreaperRuntimeHeldPtysGrowing",
        "PtyreaperStaleSessionsPilingUp",
        "PtyreaperOrphansPilingUp",
        "PtyreaperTargetMissing",
      ].sort(),
    );
  });

  it("warns and pages on usage of the container capacity, with for:", () => {
    const high = rules.find((r) => r.alert === "PtyreaperPtyUsageHigh");
    const critical = rules.find((r) => r.alert === "PtyreaperPtyUsageCritical");
    expect(high?.labels?.severity).toBe("warning");
    expect(critical?.labels?.severity).toBe("critical");
    for (const rule of [high, critical]) {
      expect(rule?.expr).toContain("ptyreaper_pty_usage_ratio");
      expect(rule?.for).toMatch(/^\d+m$/);
    }
    expect(rules.find((r) => r.alert === "PtyreaperPtyExhaustionForecast")?.expr).toContain("predict_linear(ptyreaper_pty_allocated");
  });

  it("sums the per-session gauges over runtime before their threshold: sessions split between runtimes still count", () => {
    for (const [alert, metric] of [
      ["PtyreaperStaleSessionsPilingUp", "ptyreaper_exec_sessions"],
      ["PtyreaperOrphansPilingUp", "ptyreaper_exec_clients"],
    ]) {
      expect(rules.find((r) => r.alert === alert)?.expr).toMatch(new RegExp(`^sum without \\(runtime\\) \\(${metric}\\{[^}]*\\}\\) >=`));
    }
  });

  it.each(rules.map((r) => [r.alert, r] as const))("%s names only metrics ptyreaper exposes (or up)", (_name, rule) => {
    const names = metricNamesIn(rule.expr);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(name === "up" || exposed.has(name), `${name} is not exposed by ptyreaper`).toBe(true);
  });

  it.each(rules.map((r) => [r.alert, r] as const))("%s has severity, summary, a description with the numbers and a runbook", (_name, rule) => {
    expect(["warning", "critical"]).toContain(rule.labels?.severity);
    const annotations = rule.annotations ?? {};
    expect(annotations.summary).toBeTruthy();
    expect(annotations.description).toBeTruthy();
    // An alert on a 0/1 condition has no number worth quoting; every other one quotes its value.
    const booleanCondition = /== 0\s*$|^absent\(/.test(rule.expr.trim());
    if (!booleanCondition) expect(annotations.description).toContain("{{ $value");
    expect(annotations.runbook_url).toBe(`https://github.com/ptyreaper/ptyreaper#runbook-${rule.alert.toLowerCase()}`);
  });

  it("links every runbook to a heading that exists in README.md", () => {
    const anchors = readmeAnchors();
    for (const rule of rules) {
      const anchor = new URL(rule.annotations?.runbook_url ?? "http://x/").hash.slice(1);
      expect(anchors, `README.md has no heading for #${anchor}`).toContain(anchor);
    }
  });

  it.each(rules.map((r) => [r.alert] as const))("%s is made to fire and not to fire in alerts.test.yml", (name) => {
    const evaluations = ruleTests.filter((t) => t.alertname === name);
    expect(
      evaluations.some((t) => (t.exp_alerts ?? []).length > 0),
      `${name} never fires in alerts.test.yml`,
    ).toBe(true);
    expect(
      evaluations.some((t) => (t.exp_alerts ?? []).length === 0),
      `${name} is never shown silent in alerts.test.yml`,
    ).toBe(true);
  });
});
