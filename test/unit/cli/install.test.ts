// install/uninstall into a temporary root, from a small fake package with a dependency tree.
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeInstallCommand, makeUninstallCommand, verifyHint, type InstallCommandDeps } from "../../../src/cli/install.js";
import type { CliIo } from "../../../src/cli/io.js";
import { UsageError } from "../../../src/errors.js";
import { INSTALL_RECORD, NATIVE_OUTPUTS } from "../../../src/shipped.js";
import { DAEMON_ENV, DAEMON_NODE_FLAGS, launcherText, productionDependencies, unitText, LAUNCHER_MARK } from "../../../src/systemd/install.js";

const REAL_UNIT = readFileSync(new URL("../../../systemd/ptyreaper.service", import.meta.url), "utf8");
const DEFAULT_CONFIG = "pollInterval: 10s\n";

let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), "ptyreaper-install-"));
});
afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

function write(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

function pkgJson(path: string, fields: Record<string, unknown>): void {
  write(join(path, "package.json"), JSON.stringify(fields));
}

/** A ptyreaper package at `root`; its dependencies live in `modules` (root/node_modules, or hoisted above it). */
function fakePackage(root: string, modules = join(root, "node_modules")): string {
  pkgJson(root, {
    name: "ptyreaper",
    version: "9.9.9",
    dependencies: { alpha: "1" },
    optionalDependencies: { "not-built": "1", gamma: "1" },
    devDependencies: { devonly: "1" },
  });
  write(join(root, "dist", "main.js"), "console.log('ptyreaper 9.9.9');\n");
  write(join(root, "config", "ptyreaper.yaml"), DEFAULT_CONFIG);
  write(join(root, "systemd", "ptyreaper.service"), REAL_UNIT);
  write(join(root, "README.md"), "# ptyreaper\n");
  write(join(root, "proto", "containerd", "tasks.proto"), 'syntax = "proto3";\n');
  // One native output built (pidfd), the others not: install copies the one and warns about the rest.
  write(join(root, NATIVE_OUTPUTS.pidfd), "not really an addon\n");
  write(join(root, "build", "Release", "obj.target", "pidfd.o"), "an intermediate, not shipped\n");
  write(join(root, "src", "main.ts"), "// not shipped\n");
  pkgJson(join(modules, "alpha"), { name: "alpha", dependencies: { beta: "1", shared: "1" } });
  write(join(modules, "alpha", "index.js"), "module.exports = 1;\n");
  // alpha needs beta@2, nested; the hoisted beta@1 belongs to the dev dependency only.
  pkgJson(join(modules, "alpha", "node_modules", "beta"), { name: "beta", version: "2.0.0" });
  pkgJson(join(modules, "beta"), { name: "beta", version: "1.0.0" });
  pkgJson(join(modules, "shared"), {
    name: "shared",
    peerDependencies: { gamma: "1", nope: "1" },
    peerDependenciesMeta: { nope: { optional: true } },
  });
  pkgJson(join(modules, "gamma"), { name: "gamma" });
  pkgJson(join(modules, "devonly"), { name: "devonly", dependencies: { beta: "1" } });
  write(join(modules, ".bin", "devonly"), "#!/bin/sh\n");
  return root;
}

function capture(): CliIo & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    env: {},
    cwd: work,
    stdout: (text: string) => {
      io.out += text;
    },
    stderr: (text: string) => {
      io.err += text;
    },
  };
  return io;
}

function deps(packageRoot: string, overrides: Partial<InstallCommandDeps> = {}): InstallCommandDeps {
  return { packageRoot: () => packageRoot, nodePath: "/usr/bin/node", isRoot: () => true, canNotify: () => true, ...overrides };
}

/** Every file under dir with its content (symlinks as "-> target"), for before/after comparisons. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (path: string): void => {
    const stat = lstatSync(path);
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
    else if (stat.isSymbolicLink()) out[relative(dir, path)] = `-> ${readlinkSync(path)}`;
    else out[relative(dir, path)] = readFileSync(path, "utf8");
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

async function run(command: ReturnType<typeof makeInstallCommand>, args: string[]) {
  const io = capture();
  const code = await command(args, io);
  return { code, out: io.out, err: io.err };
}

describe("install", () => {
  it("puts the program, launcher, unit and config under the root", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    const result = await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    expect(result.code).toBe(0);

    const lib = join(root, "usr/local/lib/ptyreaper");
    expect(Object.keys(tree(lib)).sort()).toEqual([
      "README.md",
      "build/Release/pidfd.node",
      "config/ptyreaper.yaml",
      "dist/main.js",
      INSTALL_RECORD,
      "node_modules/alpha/index.js",
      "node_modules/alpha/node_modules/beta/package.json",
      "node_modules/alpha/package.json",
      "node_modules/gamma/package.json",
      "node_modules/shared/package.json",
      "package.json",
      "proto/containerd/tasks.proto",
      "systemd/ptyreaper.service",
    ]);
    expect(JSON.parse(readFileSync(join(lib, INSTALL_RECORD), "utf8"))).toEqual({
      installedBy: "ptyreaper install",
      native: { ptyscan: "not built", pidfd: "installed", sockdiag: "not built", bpfFinder: "not built" },
    });
    expect(JSON.parse(readFileSync(join(lib, "node_modules/alpha/node_modules/beta/package.json"), "utf8"))).toMatchObject({ version: "2.0.0" });

    const launcher = join(root, "usr/local/bin/ptyreaper");
    expect(readFileSync(launcher, "utf8")).toBe(
      `#!/bin/sh\n${LAUNCHER_MARK}\n` +
        `main="$(dirname "$(readlink -f "$0")")"/'../lib/ptyreaper/dist/main.js'\n` +
        `if [ "$1" = run ]; then exec '/usr/bin/node' --max-semi-space-size=1 --optimize-for-size --single-threaded-gc --max-opt=1 "$main" "$@"; fi\n` +
        `exec '/usr/bin/node' "$main" "$@"\n`,
    );
    expect(lstatSync(launcher).mode & 0o777).toBe(0o755);

    const unit = readFileSync(join(root, "etc/systemd/system/ptyreaper.service"), "utf8");
    expect(unit).toContain("\nExecStart=/usr/local/bin/ptyreaper run --config /etc/ptyreaper/config.yaml\n");
    expect(readFileSync(join(root, "etc/ptyreaper/config.yaml"), "utf8")).toBe(DEFAULT_CONFIG);

    expect(result.out).toContain("systemd-analyze verify --root=");
    expect(result.out).toMatch(/^program +installed +\S+usr\/local\/lib\/ptyreaper {2}\(native: pidfd\)$/m);
    expect(result.err.trim().split("\n")).toEqual([
      `ptyreaper: warning: ${join(pkg, "build/Release/ptyscan.node")} was not built, so the /proc scan falls back to the slower JS reader`,
      `ptyreaper: warning: ${join(pkg, "build/Release/sockdiag.node")} was not built, so exec clients cannot be seen and orphanGrace never applies`,
      `ptyreaper: warning: ${join(pkg, "build/Release/ptyfds.bpf.o")} was not built, so \`ptyreaper sessions\` and the daemon's full passes read every fd link (install clang to build it)`,
    ]);
  });

  it("points ExecStart and the launcher at --prefix", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    await run(makeInstallCommand(deps(pkg)), ["--root", root, "--prefix", "/opt/ptyr"]);
    expect(readFileSync(join(root, "etc/systemd/system/ptyreaper.service"), "utf8")).toContain(
      "\nExecStart=/opt/ptyr/bin/ptyreaper run --config /etc/ptyreaper/config.yaml\n",
    );
    // The launcher finds the program beside it, so it runs from the root it was written under.
    const launched = spawnSync(join(root, "opt/ptyr/bin/ptyreaper"), ["--version"], { encoding: "utf8" });
    expect(launched.stdout).toBe("ptyreaper 9.9.9\n");
    expect(launched.status).toBe(0);
  });

  it("is idempotent: a second run leaves the same files and says what was unchanged", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    const install = makeInstallCommand(deps(pkg));
    await run(install, ["--root", root]);
    const first = tree(root);
    const again = await run(install, ["--root", root]);
    expect(again.code).toBe(0);
    expect(tree(root)).toEqual(first);
    expect(again.out).toMatch(/^program +replaced/m);
    expect(again.out).toMatch(/^launcher +unchanged/m);
    expect(again.out).toMatch(/^unit +unchanged/m);
    expect(again.out).toMatch(/^config +unchanged/m);
    // No staging or old copies left next to the program.
    expect(readdirSync(join(root, "usr/local/lib"))).toEqual(["ptyreaper"]);
  });

  it("never overwrites an edited config, and says so", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    write(join(root, "etc/ptyreaper/config.yaml"), "pollInterval: 30s # mine\n");
    const result = await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    expect(result.code).toBe(0);
    expect(readFileSync(join(root, "etc/ptyreaper/config.yaml"), "utf8")).toBe("pollInterval: 30s # mine\n");
    expect(result.out).toMatch(/^config +kept .*differs from the shipped default.*\/usr\/local\/lib\/ptyreaper\/config\/ptyreaper.yaml/m);
  });

  it("updates a unit it wrote earlier", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    const install = makeInstallCommand(deps(pkg));
    await run(install, ["--root", root]);
    const unitPath = join(root, "etc/systemd/system/ptyreaper.service");
    writeFileSync(unitPath, readFileSync(unitPath, "utf8").replace("WatchdogSec=60s", "WatchdogSec=5s"));
    const result = await run(install, ["--root", root]);
    expect(result.out).toMatch(/^unit +updated/m);
    expect(readFileSync(unitPath, "utf8")).toContain("WatchdogSec=60s");
  });

  it("writes nothing with --dry-run", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    const result = await run(makeInstallCommand(deps(pkg, { isRoot: () => false })), ["--dry-run"]);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^program +would be installed +\/usr\/local\/lib\/ptyreaper {2}\(native: pidfd\)$/m);
    expect(result.out).toContain("dry run: nothing was written");
    const dry = await run(makeInstallCommand(deps(pkg)), ["--root", root, "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(existsSync(root)).toBe(false);
  });

  it.each([
    ["usr/local/bin/ptyreaper", "#!/bin/sh\necho someone else's\n", /usr\/local\/bin\/ptyreaper exists and was not written by ptyreaper install/],
    ["etc/systemd/system/ptyreaper.service", "[Service]\nExecStart=/bin/true\n", /ptyreaper.service exists and was not written by ptyreaper install/],
    ["usr/local/lib/ptyreaper/package.json", '{"name":"other"}', /lib\/ptyreaper exists and is not a ptyreaper install/],
  ])("refuses to replace a foreign %s, and writes nothing", async (path, content, message) => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    write(join(root, path), content);
    const before = tree(root);
    await expect(run(makeInstallCommand(deps(pkg)), ["--root", root])).rejects.toThrow(message);
    expect(tree(root)).toEqual(before);
  });

  it("replaces npm's global link to this package with the launcher", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    mkdirSync(join(root, "usr/local/bin"), { recursive: true });
    symlinkSync(join(pkg, "dist", "main.js"), join(root, "usr/local/bin/ptyreaper"));
    const result = await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    expect(result.out).toMatch(/^launcher +updated .*replaced npm's link/m);
    expect(lstatSync(join(root, "usr/local/bin/ptyreaper")).isSymbolicLink()).toBe(false);
  });

  it("installs from an npm-installed tarball, whose dependencies are hoisted next to it", async () => {
    const project = join(work, "project");
    const pkg = fakePackage(join(project, "node_modules", "ptyreaper"), join(project, "node_modules"));
    const root = join(work, "root");
    const result = await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    expect(result.code).toBe(0);
    expect(Object.keys(tree(join(root, "usr/local/lib/ptyreaper/node_modules"))).sort()).toEqual([
      "alpha/index.js",
      "alpha/node_modules/beta/package.json",
      "alpha/package.json",
      "gamma/package.json",
      "shared/package.json",
    ]);
  });

  it("fails clearly when a required dependency is not installed", () => {
    const pkg = fakePackage(join(work, "pkg"));
    rmSync(join(pkg, "node_modules", "shared"), { recursive: true });
    expect(() => productionDependencies(pkg)).toThrow(/shared, needed by alpha, is not installed/);
  });

  it("fails clearly when the package is not built", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    rmSync(join(pkg, "dist"), { recursive: true });
    await expect(run(makeInstallCommand(deps(pkg)), ["--root", join(work, "root")])).rejects.toThrow(/dist\/main.js is missing: run `npm run build`/);
  });

  it("needs root to install into /", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    await expect(run(makeInstallCommand(deps(pkg, { isRoot: () => false })), [])).rejects.toThrow(/run it as root/);
  });

  it.each([[["--bogus"]], [["--root"]], [["extra"]]])("rejects bad arguments %j as usage errors", async (args) => {
    const pkg = fakePackage(join(work, "pkg"));
    await expect(run(makeInstallCommand(deps(pkg)), args)).rejects.toBeInstanceOf(UsageError);
  });

  it("rejects a relative --prefix as a usage error (exit 64), for install and uninstall alike", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    for (const command of [makeInstallCommand(deps(pkg)), makeUninstallCommand(deps(pkg))]) {
      const attempt = run(command, ["--root", join(work, "r"), "--prefix", "usr/local"]);
      await expect(attempt).rejects.toBeInstanceOf(UsageError);
      await expect(attempt).rejects.toThrow(/--prefix must be an absolute path/);
    }
    expect(existsSync(join(work, "r"))).toBe(false);
  });

  it.each([
    ["/root/.nvm/versions/node/v20/bin/node", true, /ProtectHome=yes hides/],
    ["/usr/bin/node", false, /unix-dgram addon is not built/],
  ])("warns when the service could not start or notify (node %s)", async (nodePath, canNotify, warning) => {
    const pkg = fakePackage(join(work, "pkg"));
    const result = await run(makeInstallCommand(deps(pkg, { nodePath, canNotify: () => canNotify })), ["--root", join(work, "root")]);
    expect(result.code).toBe(0);
    expect(result.err).toMatch(warning);
  });
});

describe("uninstall", () => {
  async function installed(): Promise<{ pkg: string; root: string }> {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    // Things that were there before and are not ours.
    write(join(root, "etc/systemd/system/other.service"), "[Service]\nExecStart=/bin/true\n");
    write(join(root, "usr/local/bin/other-tool"), "#!/bin/sh\n");
    write(join(root, "etc/ptyreaper/notes.txt"), "admin's notes\n");
    await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    return { pkg, root };
  }

  it("removes what install put there and nothing else", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    write(join(root, "etc/systemd/system/other.service"), "[Service]\nExecStart=/bin/true\n");
    write(join(root, "usr/local/bin/other-tool"), "#!/bin/sh\n");
    const before = tree(root);
    await run(makeInstallCommand(deps(pkg)), ["--root", root]);
    const result = await run(makeUninstallCommand(deps(pkg)), ["--root", root]);
    expect(result.code).toBe(0);
    expect(tree(root)).toEqual(before);
    expect(existsSync(join(root, "etc/ptyreaper"))).toBe(false);
    expect(result.out).toMatch(/^unit +removed/m);
    expect(result.out).toMatch(/^launcher +removed/m);
    expect(result.out).toMatch(/^program +removed/m);
    expect(result.out).toMatch(/^config +removed/m);
  });

  it("keeps an edited config unless --purge", async () => {
    const { pkg, root } = await installed();
    const config = join(root, "etc/ptyreaper/config.yaml");
    writeFileSync(config, "pollInterval: 30s\n");
    const kept = await run(makeUninstallCommand(deps(pkg)), ["--root", root]);
    expect(kept.out).toMatch(/^config +kept .*--purge removes it/m);
    expect(readFileSync(config, "utf8")).toBe("pollInterval: 30s\n");
    expect(existsSync(join(root, "usr/local/lib/ptyreaper"))).toBe(false);

    const purged = await run(makeUninstallCommand(deps(pkg)), ["--root", root, "--purge"]);
    expect(purged.out).toMatch(/^config +removed .*--purge/m);
    expect(existsSync(config)).toBe(false);
    // The admin's own file in /etc/ptyreaper stays, and so does the directory holding it.
    expect(readFileSync(join(root, "etc/ptyreaper/notes.txt"), "utf8")).toBe("admin's notes\n");
    expect(readFileSync(join(root, "etc/systemd/system/other.service"), "utf8")).toContain("/bin/true");
    expect(existsSync(join(root, "usr/local/bin/other-tool"))).toBe(true);
  });

  it("leaves a launcher or unit it did not write", async () => {
    const pkg = fakePackage(join(work, "pkg"));
    const root = join(work, "root");
    write(join(root, "usr/local/bin/ptyreaper"), "#!/bin/sh\necho mine\n");
    chmodSync(join(root, "usr/local/bin/ptyreaper"), 0o755);
    write(join(root, "etc/systemd/system/ptyreaper.service"), "[Service]\nExecStart=/bin/true\n");
    const result = await run(makeUninstallCommand(deps(pkg)), ["--root", root]);
    expect(result.out).toMatch(/^unit +left .*not written by ptyreaper install/m);
    expect(result.out).toMatch(/^launcher +left/m);
    expect(result.out).toMatch(/^program +absent/m);
    expect(readFileSync(join(root, "usr/local/bin/ptyreaper"), "utf8")).toContain("echo mine");
  });

  it("refuses while the service is still enabled", async () => {
    const { pkg, root } = await installed();
    mkdirSync(join(root, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
    symlinkSync("/etc/systemd/system/ptyreaper.service", join(root, "etc/systemd/system/multi-user.target.wants/ptyreaper.service"));
    const before = tree(root);
    await expect(run(makeUninstallCommand(deps(pkg)), ["--root", root])).rejects.toThrow(/systemctl disable --now ptyreaper/);
    expect(tree(root)).toEqual(before);
  });

  it("removes nothing with --dry-run", async () => {
    const { pkg, root } = await installed();
    const before = tree(root);
    const result = await run(makeUninstallCommand(deps(pkg)), ["--root", root, "--dry-run"]);
    expect(result.out).toMatch(/^program +would be removed/m);
    expect(tree(root)).toEqual(before);
  });
});

describe("unitText and launcherText", () => {
  it("rewrites only the ExecStart binary", () => {
    const out = unitText(REAL_UNIT, "/opt/x/bin/ptyreaper");
    const changed = out.split("\n").filter((line, i) => line !== REAL_UNIT.split("\n")[i]);
    expect(changed).toEqual(["ExecStart=/opt/x/bin/ptyreaper run --config /etc/ptyreaper/config.yaml"]);
  });

  it("refuses a template without the marker or ExecStart line, and a prefix with spaces", () => {
    expect(() => unitText("[Service]\nExecStart=/usr/local/bin/ptyreaper run\n", "/x")).toThrow(/lacks/);
    expect(() => unitText(REAL_UNIT, "/opt/my dir/bin/ptyreaper")).toThrow(/white space/);
  });

  it("quotes paths for the shell, and runs node with the daemon's memory flags", () => {
    const paths = { hostBin: "/opt/x/bin/ptyreaper", hostLibDir: "/opt/it's lib/ptyreaper" };
    expect(launcherText("/opt/it's/node", paths)).toContain(
      `\nmain="$(dirname "$(readlink -f "$0")")"/'../../it'\\''s lib/ptyreaper/dist/main.js'\n`,
    );
    expect(launcherText("/opt/it's/node", paths)).toContain(
      `exec '/opt/it'\\''s/node' --max-semi-space-size=1 --optimize-for-size --single-threaded-gc --max-opt=1 "$main" "$@"`,
    );
    expect(launcherText("/opt/it's/node", paths)).toContain(`\nexec '/opt/it'\\''s/node' "$main" "$@"\n`);
  });

  it("runs the daemon the same way from npm start, the unit and the launcher (what npm run bench measures)", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { scripts: Record<string, string> };
    expect(DAEMON_ENV).toEqual({ MALLOC_ARENA_MAX: "2" });
    expect(pkg.scripts.start).toBe(`MALLOC_ARENA_MAX=2 node ${DAEMON_NODE_FLAGS.join(" ")} dist/main.js run --config config/ptyreaper.yaml`);
    expect(pkg.scripts.soak).toContain(`MALLOC_ARENA_MAX=2 node --expose-gc ${DAEMON_NODE_FLAGS.join(" ")} `);
    expect(REAL_UNIT.split("\n")).toContain("Environment=MALLOC_ARENA_MAX=2");
    expect(launcherText("/usr/bin/node", { hostBin: "/bin/ptyreaper", hostLibDir: "/lib" })).toContain(` ${DAEMON_NODE_FLAGS.join(" ")} `);
  });
});

describe("verifyHint", () => {
  it("tells how to give an empty root systemd's own units and kill before verifying", () => {
    const hint = verifyHint("/tmp/it's root");
    expect(hint).toContain("cp -a /usr/lib/systemd/system '/tmp/it'\\''s root'/usr/lib/systemd/");
    expect(hint).toContain("systemd-analyze verify --root='/tmp/it'\\''s root' /etc/systemd/system/ptyreaper.service");
  });

  it("only verifies when the root already has systemd's units", () => {
    write(join(work, "usr/lib/systemd/system/sysinit.target"), "[Unit]\n");
    const hint = verifyHint(work);
    expect(hint).not.toContain("cp -a");
    expect(hint).toContain(`systemd-analyze verify --root='${work}' /etc/systemd/system/ptyreaper.service`);
  });
});
