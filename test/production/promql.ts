// Helpers for checking alert rules and dashboards against what ptyreaper really exposes.
import { readFileSync } from "node:fs";
import { Histogram } from "prom-client";
import { PtyreaperMetrics } from "../../src/metrics/metrics.js";

/** Every series name the daemon's registry can expose, with a histogram's _bucket, _sum and _count. */
export async function exposedMetricNames(): Promise<Set<string>> {
  const metrics = new PtyreaperMetrics({ version: "test" });
  const names = new Set<string>();
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    if (String(metric.type) === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(metric.name + suffix);
    else names.add(metric.name);
  }
  return names;
}

/** Series names whose metric has a runtime label (a histogram's _bucket, _sum and _count included). */
export function runtimeLabelledMetrics(): Set<string> {
  const metrics = new PtyreaperMetrics({ version: "test", defaultMetrics: false });
  const names = new Set<string>();
  for (const metric of metrics.registry.getMetricsAsArray()) {
    // labelNames is declared on each metric; a fresh registry has no series yet for some (container_ptys).
    const { labelNames = [] } = metric as unknown as { labelNames?: string[] };
    if (!labelNames.includes("runtime")) continue;
    const histogram = (metric as unknown) instanceof Histogram;
    for (const suffix of histogram ? ["_bucket", "_sum", "_count"] : [""]) names.add(metric.name + suffix);
  }
  return names;
}

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/**
 * Metric names a PromQL expression selects. Good enough for our own rules and panels: strips strings,
 * label matchers, ranges and grouping clauses, then keeps identifiers that are not function calls.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?\w+\}?/g, " ");
  const names = new Set<string>();
  for (const match of stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?!\w)(\s*\()?/g)) {
    const [, name, call] = match;
    if (!name || call || KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

interface DashboardPanel {
  id?: number;
  type?: string;
  title?: string;
  targets?: { expr?: string }[];
  panels?: DashboardPanel[];
}

/** Every query of config/grafana-dashboard.json with the title of its panel (rows included). */
export function dashboardExprs(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(new URL("../../config/grafana-dashboard.json", import.meta.url), "utf8")) as {
    panels?: DashboardPanel[];
  };
  const flatten = (panels: DashboardPanel[] = []): DashboardPanel[] => panels.flatMap((p) => [p, ...flatten(p.panels)]);
  return flatten(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title ?? String(p.id), expr: t.expr ?? "" })));
}

/** Grafana's template variables replaced by values Prometheus accepts, so promtool can parse the query. */
export function withGrafanaVariablesFilled(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "5m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "1h")
    .replace(/\$\{?(\w+)\}?/g, ".+");
}
