// The layering lint rule (eslint-layers.js): imports in src/ run downwards, and a new folder must be given a layer.
import { resolve } from "node:path";
import { RuleTester } from "eslint";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain-JS module of the lint config, without type declarations
import { layerOf, layersPlugin } from "../../eslint-layers.js";

const src = (path: string): string => resolve(import.meta.dirname, "../../src", path);

describe("layerOf", () => {
  it.each([
    ["errors.ts", 0],
    ["config/types.ts", 0],
    ["config/load.ts", 6],
    ["domain/attribution.ts", 1],
    ["procfs/scan.ts", 2],
    ["runtimes/containerd/clients.ts", 3],
    ["reaper/reaper.ts", 4],
    ["main.ts", 8],
    ["newfolder/x.ts", null],
  ])("%s is in layer %s", (path, layer) => {
    expect((layerOf as (p: string) => number | null)(path)).toBe(layer);
  });
});

RuleTester.describe = describe;
RuleTester.it = it;
const rule = (layersPlugin as { rules: Record<string, Parameters<RuleTester["run"]>[1]> }).rules["imports-downward"];
if (rule === undefined) throw new Error("eslint-layers.js has no imports-downward rule");
new RuleTester({ languageOptions: { ecmaVersion: 2022, sourceType: "module" } }).run("imports-downward", rule, {
  valid: [
    { filename: src("domain/policy.ts"), code: 'import { formatDuration } from "../config/duration.js";' },
    { filename: src("procfs/scan.ts"), code: 'import { ptyKey } from "../domain/types.js";' },
    { filename: src("runtimes/containerd/clients.ts"), code: 'import { attribute } from "../../domain/attribution.js";' },
    { filename: src("metrics/metrics.ts"), code: 'import { WebConfig } from "../http/webconfig.js";' },
    { filename: src("domain/types.ts"), code: 'import { pino } from "pino";' },
  ],
  invalid: [
    { filename: src("domain/runtime-sessions.ts"), code: 'import { gatherRuntime } from "../runtimes/view.js";', errors: [{ messageId: "upward" }] },
    { filename: src("procfs/scan.ts"), code: 'export { Reaper } from "../reaper/reaper.js";', errors: [{ messageId: "upward" }] },
    { filename: src("domain/policy.ts"), code: 'const m = import("../poller/poller.js");', errors: [{ messageId: "upward" }] },
    { filename: src("domain/policy.ts"), code: 'import { loadConfig } from "../config/load.js";', errors: [{ messageId: "upward" }] },
    { filename: src("newfolder/x.ts"), code: 'import { x } from "../domain/types.js";', errors: [{ messageId: "unknown" }] },
  ],
});
