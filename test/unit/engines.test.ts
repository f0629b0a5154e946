// The Node.js version we claim (package.json engines) against what the locked dependencies ask for: `npm ci`
// on the lowest claimed Node must not warn EBADENGINE for anything the program ships or the tests run.
import { readFileSync } from "node:fs";
import semver from "semver";
import { describe, expect, it } from "vitest";

const repo = (path: string): unknown => JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), "utf8"));
const pkg = repo("package.json") as { engines: { node: string } };
const lock = repo("package-lock.json") as { packages: Record<string, { dev?: boolean; engines?: { node?: string } | string[] }> };

function nodeRange(entry: { engines?: { node?: string } | string[] }): string | null {
  return entry.engines && !Array.isArray(entry.engines) ? (entry.engines.node ?? null) : null;
}

describe("engines", () => {
  const lowest = semver.minVersion(pkg.engines.node)?.version ?? "";

  it("claims Node 20 or later, as the README says", () => {
    expect(lowest).toBe("20.0.0");
    expect(readFileSync(new URL("../../README.md", import.meta.url), "utf8")).toContain("Node.js 20 or later");
  });

  it("every production dependency runs on the lowest Node claimed", () => {
    const refusing = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== "" && entry.dev !== true)
      .filter(([, entry]) => nodeRange(entry) !== null && !semver.satisfies(lowest, nodeRange(entry) as string))
      .map(([path, entry]) => `${path} wants node ${nodeRange(entry)}`);
    expect(refusing).toEqual([]);
  });

  it("every dev dependency runs on the Node running these tests", () => {
    const refusing = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== "" && entry.dev === true)
      .filter(([, entry]) => nodeRange(entry) !== null && !semver.satisfies(process.versions.node, nodeRange(entry) as string))
      .map(([path, entry]) => `${path} wants node ${nodeRange(entry)}`);
    expect(refusing).toEqual([]);
  });
});
