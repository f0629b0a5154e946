// scripts/write-revision.mjs: the git revision `--version` shows, "unknown" outside a git checkout.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const SCRIPT = new URL("../../../scripts/write-revision.mjs", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ptyreaper-revision-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the script as it would run from a package rooted at `root`; returns what it wrote. */
function revisionIn(root: string): string {
  mkdirSync(join(root, "scripts"), { recursive: true });
  copyFileSync(SCRIPT, join(root, "scripts", "write-revision.mjs"));
  execFileSync(process.execPath, [join(root, "scripts", "write-revision.mjs")]);
  return readFileSync(join(root, "dist", "revision.txt"), "utf8");
}

describe("write-revision", () => {
  it("says unknown for a source tree without .git (a tarball)", () => {
    expect(revisionIn(join(dir, "tarball"))).toBe("unknown\n");
  });

  it("writes the commit of a git checkout, -dirty when it has changes", () => {
    const repo = join(dir, "clone");
    mkdirSync(repo);
    const git = (...args: string[]): string =>
      execFileSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", ...args], { encoding: "utf8" }).trim();
    git("init", "-q");
    writeFileSync(join(repo, "README.md"), "one\n");
    git("add", "README.md");
    git("commit", "-q", "-m", "first");
    const head = git("rev-parse", "--short=12", "HEAD");
    // Untracked files (the copied script, dist/) do not count as changes.
    expect(revisionIn(repo)).toBe(`${head}\n`);
    writeFileSync(join(repo, "README.md"), "two\n");
    expect(revisionIn(repo)).toBe(`${head}-dirty\n`);
  });
});
