// The one list of what ships (src/shipped.ts) against every place that builds or packs it: binding.gyp, the BPF
// build script, the Dockerfile, .dockerignore, package.json's files; and the reasons a missing file is given.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { INSTALL_RECORD, missingFileReason, NATIVE_OUTPUTS, PROGRAM_FILES } from "../../src/shipped.js";

const repo = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

describe("the native outputs", () => {
  it("are exactly the addons binding.gyp builds and the object build-bpf.sh writes", () => {
    const gyp = JSON.parse(repo("binding.gyp")) as { targets: { target_name: string }[] };
    const addons = Object.values(NATIVE_OUTPUTS).filter((path) => path.endsWith(".node"));
    expect(gyp.targets.map((t) => `build/Release/${t.target_name}.node`).sort()).toEqual([...addons].sort());
    expect(repo("native/build-bpf.sh")).toMatch(new RegExp(`^out=${NATIVE_OUTPUTS.bpfFinder.replaceAll(".", "\\.")}$`, "m"));
  });

  it("are staged into the image by install's own code, the three addons required", () => {
    const dockerfile = repo("Dockerfile");
    expect(dockerfile).toMatch(/node scripts\/stage-program\.mjs \/stage\/ptyreaper ptyscan pidfd sockdiag\n/);
    // Nothing reaches the final stage from the builder but the staged program.
    expect(dockerfile.match(/^COPY --from=build .*$/gm)).toEqual(["COPY --from=build /stage/ptyreaper ./"]);
  });
});

describe("the program files", () => {
  it("reach the image build and the npm package", () => {
    const dockerignore = repo(".dockerignore").split("\n");
    const files = (JSON.parse(repo("package.json")) as { files: string[] }).files.map((f) => f.replace(/\/$/, ""));
    for (const path of PROGRAM_FILES) {
      // dist/ is compiled in the builder, not copied in.
      if (path !== "dist") expect(dockerignore.filter((line) => line === `!${path}` || line === `!${path}/`)).toHaveLength(1);
      // npm packs package.json, README and LICENSE whatever `files` says.
      if (!["package.json", "README.md", "LICENSE"].includes(path)) expect(files).toContain(path);
    }
    expect(repo("Dockerfile")).toContain("COPY scripts/write-revision.mjs scripts/stage-program.mjs ./scripts/");
  });
});

describe("missingFileReason", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "ptyreaper-shipped-"));
    mkdirSync(join(root, "build/Release"), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));
  const record = (installedBy: string, native: Record<string, string>): void =>
    writeFileSync(join(root, INSTALL_RECORD), JSON.stringify({ installedBy, native }));

  it.each([
    ["a checkout (no install record)", null, "pidfd", /^\S+pidfd\.node is not built$/],
    [
      "an install that copied it",
      "ptyreaper install",
      "installed",
      /pidfd\.node is missing from this installed copy: reinstall it \(run `ptyreaper install` again/,
    ],
    [
      "an install made without it",
      "ptyreaper install",
      "not built",
      /pidfd\.node was not built when this copy was installed: .*run `ptyreaper install` again$/,
    ],
    ["the image", "image build", "installed", /is missing from this installed copy: reinstall it \(rebuild the image/],
  ])("in %s", (_what, installedBy, state, expected) => {
    if (installedBy !== null) record(installedBy, { pidfd: state });
    expect(missingFileReason(join(root, NATIVE_OUTPUTS.pidfd), root)).toMatch(expected);
  });

  it("says reinstall for a lost program file, which no record names", () => {
    record("ptyreaper install", {});
    expect(missingFileReason(join(root, "proto/containerd/tasks.proto"), root)).toMatch(
      /tasks\.proto is missing from this installed copy: reinstall/,
    );
  });
});
