// README.md stays true to the code: every config key, env override, metric and endpoint is documented.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS } from "../../src/config/schema.js";
import { ROUTES } from "../../src/http/server.js";
import { exposedMetricNames, runtimeLabelledMetrics } from "./promql.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const schemaSource = readFileSync(new URL("../../src/config/schema.ts", import.meta.url), "utf8");

/** "policy.pressure.high" style paths of every leaf in the defaults. */
function keyPaths(value: unknown, prefix = ""): string[] {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([key, child]) => keyPaths(child, prefix ? `${prefix}.${key}` : key));
  }
  return [prefix];
}

/** The README's configuration table: key → default, as written between backticks. */
function configTable(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const match of readme.matchAll(/^\| `([\w.]+)` \| `([^`]*)` \|/gm)) rows.set(match[1] ?? "", match[2] ?? "");
  return rows;
}

describe("README.md", () => {
  it.each(keyPaths(DEFAULT_SETTINGS))("documents config key %s with its default", (path) => {
    const table = configTable();
    expect(table.has(path), `no row for ${path}`).toBe(true);
    const value = path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], DEFAULT_SETTINGS);
    const shown = Array.isArray(value) ? JSON.stringify(value) : typeof value === "string" && value === "off" ? '"off"' : String(value);
    expect(table.get(path)).toBe(shown);
  });

  it("documents every environment override the schema knows", () => {
    const variables = [...schemaSource.matchAll(/^\/\/ {3}(PTYREAPER_\w+|DOCKER_HOST)\s/gm)].map((m) => m[1]);
    expect(variables.length).toBeGreaterThanOrEqual(6);
    for (const variable of variables) expect(readme).toContain(`| \`${variable}\` |`);
  });

  it("documents every ptyreaper metric", async () => {
    const names = [...(await exposedMetricNames())].filter((n) => n.startsWith("ptyreaper_")).map((n) => n.replace(/_(bucket|sum|count)$/, ""));
    for (const name of new Set(names)) expect(readme).toContain(`| \`${name}\` |`);
  });

  it("names the runtime label in the Metrics table for every metric that has it", () => {
    const names = new Set([...runtimeLabelledMetrics()].map((n) => n.replace(/_(bucket|sum|count)$/, "")));
    expect(names.size).toBeGreaterThanOrEqual(8);
    for (const name of names) {
      const row = readme.split("\n").find((line) => line.startsWith(`| \`${name}\` |`)) ?? "";
      expect(row.split(" | ")[2], name).toContain("`runtime`");
    }
  });

  it("documents every HTTP endpoint", () => {
    for (const route of ROUTES.filter((r) => r !== "/")) expect(readme).toContain(`| \`${route}\` |`);
  });

  it("keeps the Performance section for the benchmark's figures", () => {
    expect(readme).toMatch(/^## Performance\n\nFigures are measured by `npm run bench`; see below\.\n/m);
    const section = readme.slice(readme.indexOf("## Performance"), readme.indexOf("\n## ", readme.indexOf("## Performance") + 1));
    for (const measure of ["full inventory", "lsof", "steady-state daemon cycle", "/metrics", "RSS", "Docker API requests"])
      expect(section).toContain(measure);
  });

  it("gives the two quick-start commands", () => {
    expect(readme).toContain("```sh\nnpm ci && npm start\n```");
    expect(readme).toContain("```sh\nsudo npm test\n```");
  });

  it("says in the quick start that the daemon enforces by default, and how to start in dry-run", () => {
    const quickStart = readme.slice(readme.indexOf("## Quick start"), readme.indexOf("\n## ", readme.indexOf("## Quick start") + 1));
    expect(quickStart).toMatch(/enforces by default/);
    expect(quickStart).toContain("--dry-run");
    expect(quickStart).toContain("PTYREAPER_MODE=dry-run");
  });

  it("documents every exit code main.ts uses", () => {
    for (const code of ["0", "1", "64", "78"]) expect(readme).toMatch(new RegExp(`^\\| \`${code}\` \\|`, "m"));
  });

  it("has no references to the project's internal issue tracker", () => {
    // "moby issue #9098" is a public link; "issue 5" meant this project's own tracker.
    expect(readme).not.toMatch(/\bissues? \d+\b/i);
  });

  it("ships the license package.json names, in full", () => {
    const license = readFileSync(new URL("../../LICENSE", import.meta.url), "utf8");
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { license: string };
    expect(pkg.license).toBe("Apache-2.0");
    expect(license).toMatch(/^\s*Apache License\n\s*Version 2\.0, January 2004\n/);
    expect(license).toContain("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION");
    expect(license).toContain("END OF TERMS AND CONDITIONS");
  });

  it("links only to local files that exist", () => {
    for (const match of readme.matchAll(/\]\(((?:docs|config|systemd)\/[^)#]+)\)/g)) {
      expect(() => readFileSync(new URL(`../../${match[1] ?? ""}`, import.meta.url)), match[1]).not.toThrow();
    }
  });
});
