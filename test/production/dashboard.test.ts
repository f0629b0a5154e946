// config/grafana-dashboard.json: a well-formed dashboard whose every query names only metrics ptyreaper exposes.
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { dashboardExprs, exposedMetricNames, metricNamesIn, runtimeLabelledMetrics } from "./promql.js";

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  id?: number | null;
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; query?: unknown; datasource?: { uid?: string } }[] };
}

const dashboard = JSON.parse(readFileSync(new URL("../../config/grafana-dashboard.json", import.meta.url), "utf8")) as Dashboard;

/** Panels including those nested in collapsed rows. */
function allPanels(panels: Panel[] = []): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels)]);
}
const panels = allPanels(dashboard.panels).filter((p) => p.type !== "row");

describe("config/grafana-dashboard.json", () => {
  let exposed: Set<string>;
  beforeAll(async () => {
    exposed = await exposedMetricNames();
  });

  it("is an importable dashboard: uid, title, schemaVersion, no instance id", () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBe("ptyreaper");
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.id ?? null).toBeNull();
  });

  it("has a Prometheus data source variable, used by every panel and query", () => {
    const variable = dashboard.templating?.list?.find((v) => v.type === "datasource");
    expect(variable).toMatchObject({ name: "datasource", query: "prometheus" });
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      for (const target of panel.targets ?? []) expect(target.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
    }
    for (const v of dashboard.templating?.list ?? []) if (v.type === "query") expect(v.datasource?.uid).toBe("${datasource}");
  });

  it("gives every panel a unique id, a grid position inside 24 columns and targets with refIds", () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      expect(typeof panel.id).toBe("number");
      const pos = panel.gridPos;
      expect(pos, panel.title).toBeDefined();
      if (!pos) continue;
      expect(pos.w).toBeGreaterThan(0);
      expect(pos.h).toBeGreaterThan(0);
      expect(pos.x + pos.w).toBeLessThanOrEqual(24);
      expect(pos.y).toBeGreaterThanOrEqual(0);
      expect((panel.targets ?? []).length, panel.title).toBeGreaterThan(0);
      const refIds = (panel.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
      for (const target of panel.targets ?? []) expect(target.expr, panel.title).toBeTruthy();
    }
  });

  it("does not stack panels on top of each other", () => {
    const cells = new Map<string, string>();
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos ?? { x: 0, y: 0, w: 0, h: 0 };
      for (let col = x; col < x + w; col++) {
        for (let row = y; row < y + h; row++) {
          const key = `${col},${row}`;
          expect(cells.get(key), `${panel.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, panel.title ?? "");
        }
      }
    }
  });

  it("has the panels operators need", () => {
    const queries = dashboardExprs().map((q) => q.expr);
    const has = (pattern: RegExp): boolean => queries.some((q) => pattern.test(q));
    expect(has(/ptyreaper_pty_max\{[^}]*\} - ptyreaper_pty_reserve/)).toBe(true); // usage against capacity
    expect(has(/sum by \(owner\) \(ptyreaper_ptys/)).toBe(true);
    expect(has(/topk\(10, ptyreaper_container_ptys/)).toBe(true);
    expect(has(/sum by \(state\) \(ptyreaper_exec_sessions/)).toBe(true);
    expect(has(/sum by \(reason\) \(increase\(ptyreaper_reaped_sessions_total/)).toBe(true);
    expect(has(/histogram_quantile\(0\.99, sum by \(le\) \(rate\(ptyreaper_poll_duration_seconds_bucket/)).toBe(true);
    expect(has(/sum by \(client\) \(ptyreaper_exec_clients/)).toBe(true);
    expect(has(/histogram_quantile\(0\.9, sum by \(le\) \(increase\(ptyreaper_reclaim_seconds_bucket/)).toBe(true); // time to reclaim
    expect(has(/sum by \(runtime\) \(ptyreaper_exec_sessions/)).toBe(true);
  });

  it("filters every per-session query by the runtime variable, whose All also matches series without the label", () => {
    const variable = dashboard.templating?.list?.find((v) => v.name === "runtime") as { allValue?: string; includeAll?: boolean } | undefined;
    expect(variable).toMatchObject({ includeAll: true, allValue: ".*" });
    const labelled = runtimeLabelledMetrics();
    const perSession = dashboardExprs().filter((q) => metricNamesIn(q.expr).some((name) => labelled.has(name)));
    expect(perSession.length).toBeGreaterThanOrEqual(12);
    for (const { panel, expr } of perSession) {
      for (const selector of expr.matchAll(/(ptyreaper_\w+)\{([^}]*)\}/g)) {
        if (labelled.has(selector[1] ?? "")) expect(selector[2], `${panel}: ${expr}`).toContain('runtime=~"$runtime"');
      }
    }
  });

  it.each(dashboardExprs().map((q) => [q.panel, q.expr] as const))("%s: %s names only exposed metrics", (_panel, expr) => {
    const names = metricNamesIn(expr);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(exposed.has(name), `${name} is not exposed by ptyreaper`).toBe(true);
  });
});
