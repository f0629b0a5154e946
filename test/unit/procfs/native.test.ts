// Loading the optional native fd-link reader: every way it can be unavailable leaves the JS reads in use.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadNativeFdLinks } from "../../../src/procfs/native.js";
import { ProcFs } from "../../../src/procfs/procfs.js";

const dir = mkdtempSync(join(tmpdir(), "ptyr-native-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("loadNativeFdLinks", () => {
  it("is off when PTYREAPER_NATIVE_SCAN=0, whether or not the addon is built", () => {
    expect(loadNativeFdLinks({ env: { PTYREAPER_NATIVE_SCAN: "0" } })).toEqual({ reader: null, reason: "PTYREAPER_NATIVE_SCAN=0" });
  });

  it("says the addon is not built when its file is absent", () => {
    const path = join(dir, "absent.node");
    expect(loadNativeFdLinks({ addonPath: path, env: {} })).toEqual({ reader: null, reason: `${path} is not built` });
  });

  it("says why when the file is not a loadable addon, instead of throwing", () => {
    const path = join(dir, "broken.node");
    writeFileSync(path, "not an ELF object");
    const load = loadNativeFdLinks({ addonPath: path, env: {} });
    expect(load.reader).toBeNull();
    expect(load.reason).toMatch(/^.*broken\.node: /);
  });

  it("says so when a loadable module lacks scanFdLinks", () => {
    const path = join(dir, "other.cjs");
    writeFileSync(path, "module.exports = { somethingElse() {} };");
    expect(loadNativeFdLinks({ addonPath: path, env: {} })).toEqual({ reader: null, reason: `${path} has no scanFdLinks` });
  });

  it("is not used by a ProcFs over a fixture tree, nor when the caller passes null", () => {
    expect(new ProcFs(dir).native).toBeNull();
    expect(new ProcFs("/proc", { native: null }).fdLinksMayBePty(1)).toBeNull();
    expect(new ProcFs("/proc", { native: null }).batchOf([1], 2, { links: true, signatures: true })).toBeNull();
  });
});
