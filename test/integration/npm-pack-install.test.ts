// The package as users get it: `npm pack`, `npm install` of the tarball (from the local npm cache), then run and install from there.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHECKOUT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const VERSION = (JSON.parse(readFileSync(join(CHECKOUT, "package.json"), "utf8")) as { version: string }).version;

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });
  if (result.error) throw result.error;
  return result;
}

function succeed(command: string, args: string[], cwd: string): string {
  const result = run(command, args, cwd);
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

describe("npm pack output, installed with npm", { timeout: 300_000 }, () => {
  let work: string;
  let project: string;
  let files: string[];

  beforeAll(() => {
    if (!existsSync(join(CHECKOUT, "dist", "main.js"))) throw new Error("dist/main.js is missing: run `npm run build` (npm test does)");
    work = mkdtempSync(join(tmpdir(), "ptyreaper-pack-"));
    // --ignore-scripts: dist/ is already built by the test command; pack must not rebuild it under other tests.
    const packed = JSON.parse(succeed("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], CHECKOUT)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const tarball = join(work, packed[0]?.filename ?? "");
    files = (packed[0]?.files ?? []).map((f) => f.path);
    project = join(work, "project");
    succeed("mkdir", ["-p", project], work);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "ptyreaper-pack-test", private: true }));
    // Dependencies come from the npm cache that `npm ci` filled; the registry only for what is missing.
    succeed("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", tarball], project);
  }, 300_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ships the program, the default config, the unit, the alert rules and the dashboard, and no sources or tests", () => {
    for (const path of [
      "package.json",
      "README.md",
      "dist/main.js",
      "dist/systemd/notify.js",
      "config/ptyreaper.yaml",
      "config/alerts.yml",
      "config/alerts.test.yml",
      "config/grafana-dashboard.json",
      "systemd/ptyreaper.service",
    ]) {
      expect(files).toContain(path);
    }
    expect(files.filter((f) => f.startsWith("src/") || f.startsWith("test/") || f.startsWith("node_modules/"))).toEqual([]);
  });

  it("runs as `ptyreaper --version` from node_modules/.bin", () => {
    const out = succeed(join(project, "node_modules", ".bin", "ptyreaper"), ["--version"], project);
    expect(out.trim()).toMatch(new RegExp(`^ptyreaper ${VERSION.replace(/\./g, "\\.")} \\(revision [0-9a-f]{12}(-dirty)?\\)$`)); // built from a checkout: its revision
  });

  it("checks its own shipped config", () => {
    const pkg = join(project, "node_modules", "ptyreaper");
    const result = run(join(project, "node_modules", ".bin", "ptyreaper"), ["check-config", join(pkg, "config", "ptyreaper.yaml")], project);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("installs itself into a root from there, with its hoisted dependencies", () => {
    const root = join(work, "root");
    const out = succeed(join(project, "node_modules", ".bin", "ptyreaper"), ["install", "--root", root], project);
    expect(out).toMatch(/^program +installed /m);
    expect(out).not.toContain("warning");
    const lib = join(root, "usr/local/lib/ptyreaper");
    expect(readdirSync(join(lib, "node_modules"))).toEqual(expect.arrayContaining(["fastify", "zod", "prom-client", "dockerode", "pino", "yaml"]));
    const version = run(process.execPath, [join(lib, "dist", "main.js"), "--version"], work);
    expect(version.stdout.trim()).toMatch(new RegExp(`^ptyreaper ${VERSION.replace(/\./g, "\\.")} \\(revision [0-9a-f]{12}(-dirty)?\\)$`)); // built from a checkout: its revision
    expect(readFileSync(join(root, "etc/systemd/system/ptyreaper.service"), "utf8")).toContain(
      "\nExecStart=/usr/local/bin/ptyreaper run --config /etc/ptyreaper/config.yaml\n",
    );
  });
});
