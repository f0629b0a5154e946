// Puts ptyreaper on a host as a systemd service (program, launcher, unit, default config) and takes it away again.
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { PtyreaperError } from "../errors.js";
import {
  INSTALL_RECORD,
  NATIVE_OUTPUTS,
  PACKAGE_NAME,
  packageRootAbove,
  PROGRAM_FILES,
  type InstallRecord,
  type NativeOutput,
  WITHOUT_NATIVE_OUTPUT,
} from "../shipped.js";

export { PACKAGE_NAME };
/** The first comment of the shipped unit; uninstall removes only a unit that carries it. */
export const UNIT_MARK = "Installed by `ptyreaper install`";
export const LAUNCHER_MARK = "# ptyreaper launcher, written by `ptyreaper install`; `ptyreaper uninstall` removes it.";
/** The ExecStart binary in systemd/ptyreaper.service, replaced by PREFIX/bin/ptyreaper. */
export const TEMPLATE_BINARY = "/usr/local/bin/ptyreaper";
/** Directories that the unit's ProtectHome=yes hides from the service. */
const HIDDEN_BY_PROTECT_HOME = ["/home/", "/root/", "/run/user/"];

export class InstallError extends PtyreaperError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PTYR_INSTALL", message, options);
  }
}

export interface Layout {
  /** Where the host's / is for this install: "/" for real, a temporary directory in tests. */
  root: string;
  /** Absolute, as the installed host sees it: /usr/local by default. */
  prefix: string;
}

export interface InstallPaths {
  /** As the host sees them, for the unit's ExecStart and the launcher. */
  hostLibDir: string;
  hostBin: string;
  hostConfig: string;
  /** Under `root`, where the files are written. */
  libDir: string;
  binFile: string;
  unitFile: string;
  wantsLink: string;
  configDir: string;
  configFile: string;
}

export function installPaths({ root, prefix }: Layout): InstallPaths {
  const under = (path: string): string => join(root, path);
  const hostLibDir = join(prefix, "lib", PACKAGE_NAME);
  const hostBin = join(prefix, "bin", PACKAGE_NAME);
  return {
    hostLibDir,
    hostBin,
    hostConfig: "/etc/ptyreaper/config.yaml",
    libDir: under(hostLibDir),
    binFile: under(hostBin),
    unitFile: under("/etc/systemd/system/ptyreaper.service"),
    wantsLink: under("/etc/systemd/system/multi-user.target.wants/ptyreaper.service"),
    configDir: under("/etc/ptyreaper"),
    configFile: under("/etc/ptyreaper/config.yaml"),
  };
}

/** POSIX shell single quoting. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * V8 flags the daemon runs with (the launcher, `npm start`, the image): a 1 MB nursery instead of up to 32 MB,
 * and a heap that grows more slowly. Together they keep it within its 120 MB budget on a host of
 * 160k fds (npm run bench); node refuses the second in NODE_OPTIONS, so they go on the command line.
 * The garbage collector works on the thread that allocated instead of handing work to helper threads: for
 * heaps this small the hand-off cost more than it saved (on the held bench load with churn, 62 against 68 ms
 * of CPU per 10 s cycle over 240 s, and 93 against 114 ms on an earlier build), at a few ms more pause.
 * No optimizing compiler (`--max-opt=1`: bytecode and Sparkplug's baseline code only): a cycle every 10 s runs
 * little JavaScript, and TurboFan kept compiling it again on V8's helper threads (each old-generation GC
 * dropped optimized code that held maps it collected, about one compile a second), 15–23 ms of CPU every
 * 10 s cycle on the held bench load with churn, more than the optimized code saved (see README, Cost model).
 */
export const DAEMON_NODE_FLAGS = ["--max-semi-space-size=1", "--optimize-for-size", "--single-threaded-gc", "--max-opt=1"] as const;

/** The environment the unit (Environment=) and `npm start` give the daemon: two malloc arenas, not one per thread. */
export const DAEMON_ENV = { MALLOC_ARENA_MAX: "2" } as const;

/**
 * A shell script that execs node, so the service's main PID is the daemon itself (NotifyAccess=main).
 * It finds the program relative to its own real path (bin/ and lib/ share the prefix), so the copy
 * written under `--root DIR` runs from DIR as well as from / once the tree is moved there.
 */
export function launcherText(nodePath: string, paths: Pick<InstallPaths, "hostBin" | "hostLibDir">): string {
  const node = shellQuote(nodePath);
  const fromBin = relative(dirname(paths.hostBin), join(paths.hostLibDir, "dist", "main.js"));
  // The memory flags pay off in the long-running daemon only; a one-shot command starts faster without them.
  return (
    `#!/bin/sh\n${LAUNCHER_MARK}\n` +
    `main="$(dirname "$(readlink -f "$0")")"/${shellQuote(fromBin)}\n` +
    `if [ "$1" = run ]; then exec ${node} ${DAEMON_NODE_FLAGS.join(" ")} "$main" "$@"; fi\n` +
    `exec ${node} "$main" "$@"\n`
  );
}

/** The shipped unit with ExecStart pointing at this install's launcher. */
export function unitText(template: string, hostBin: string): string {
  const execStart = `ExecStart=${TEMPLATE_BINARY} `;
  if (!template.includes(UNIT_MARK) || !template.split("\n").some((line) => line.startsWith(execStart))) {
    throw new InstallError(`the unit template lacks "${UNIT_MARK}" or an "${execStart}..." line`);
  }
  if (/\s/.test(hostBin)) throw new InstallError(`--prefix must not contain white space: ${hostBin}`);
  return template
    .split("\n")
    .map((line) => (line.startsWith(execStart) ? `ExecStart=${hostBin} ${line.slice(execStart.length)}` : line))
    .join("\n");
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

function isPtyreaperPackage(dir: string): boolean {
  return readJson(join(dir, "package.json"))?.name === PACKAGE_NAME;
}

/** The package this code runs from: the nearest ancestor of `fromFile` whose package.json is ptyreaper's. */
export function findPackageRoot(fromFile: string): string {
  const root = packageRootAbove(fromFile);
  if (root === null) throw new InstallError(`no ptyreaper package.json above ${fromFile}`);
  return root;
}

export interface PackageCopy {
  source: string;
  /** Relative to PREFIX/lib/ptyreaper. */
  target: string;
}

function dependencyNames(pkg: Record<string, unknown>, field: string): string[] {
  const value = pkg[field];
  return value && typeof value === "object" ? Object.keys(value) : [];
}

/**
 * The production dependency tree as Node would resolve it from `packageRoot`: each package once, with
 * where it goes in the installed copy. Works for a checkout (deps under packageRoot/node_modules) and
 * for an npm install of the tarball (deps hoisted next to the package, in an ancestor's node_modules).
 */
export function productionDependencies(packageRoot: string): PackageCopy[] {
  const copies = new Map<string, PackageCopy>();
  const seen = new Set<string>();
  const ancestors: string[] = [];
  for (let dir = dirname(packageRoot); ; dir = dirname(dir)) {
    ancestors.push(dir);
    if (dir === dirname(dir)) break;
  }

  const targetFor = (dir: string): string => {
    const inside = relative(packageRoot, dir);
    if (!inside.startsWith("..")) return inside;
    // Hoisted: keep the path below the nearest ancestor whose node_modules holds it.
    for (const ancestor of ancestors) {
      const below = relative(ancestor, dir);
      if (below.startsWith(`node_modules${sep}`)) return below;
    }
    throw new InstallError(`cannot place dependency ${dir} relative to ${packageRoot}`);
  };

  const resolve = (name: string, fromDir: string): string | null => {
    for (let dir = fromDir; ; dir = dirname(dir)) {
      if (!dir.endsWith(`${sep}node_modules`)) {
        const candidate = join(dir, "node_modules", name);
        if (existsSync(join(candidate, "package.json"))) return candidate;
      }
      if (dir === dirname(dir)) return null;
    }
  };

  const visit = (dir: string): void => {
    const real = realpathSync(dir);
    if (seen.has(real)) return;
    seen.add(real);
    const pkg = readJson(join(dir, "package.json")) ?? {};
    if (dir !== packageRoot) {
      const target = targetFor(dir);
      const earlier = copies.get(target);
      if (earlier && realpathSync(earlier.source) !== real) {
        throw new InstallError(`two packages would land at ${target}: ${earlier.source} and ${dir}`);
      }
      copies.set(target, { source: dir, target });
    }
    const optionalPeers = new Set(dependencyNames(pkg, "peerDependenciesMeta"));
    const required = [...dependencyNames(pkg, "dependencies"), ...dependencyNames(pkg, "peerDependencies").filter((n) => !optionalPeers.has(n))];
    const optional = [...dependencyNames(pkg, "optionalDependencies"), ...optionalPeers];
    for (const name of new Set([...required, ...optional])) {
      const found = resolve(name, dir);
      if (found) visit(found);
      else if (!optional.includes(name)) {
        throw new InstallError(
          `${name}, needed by ${typeof pkg.name === "string" ? pkg.name : dir}, is not installed: run \`npm ci\` in ${packageRoot}`,
        );
      }
    }
  };

  visit(packageRoot);
  return [...copies.values()].sort((a, b) => a.target.localeCompare(b.target));
}

export type Outcome = "installed" | "replaced" | "updated" | "unchanged" | "kept" | "removed" | "absent" | "left";

export interface Step {
  what: "program" | "launcher" | "unit" | "config";
  path: string;
  outcome: Outcome;
  note?: string;
}

export interface Report {
  steps: Step[];
  warnings: string[];
}

export interface InstallOptions extends Layout {
  packageRoot: string;
  /** The Node.js binary the launcher runs (the one running the installer, normally). */
  nodePath: string;
  dryRun: boolean;
  /** Checks that the sd_notify addon loads from a directory; injectable for tests. */
  canNotify?: (libDir: string) => boolean;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

function isOurLauncher(path: string): boolean {
  return readText(path)?.split("\n")[1] === LAUNCHER_MARK;
}

/** npm's global install links PREFIX/bin/ptyreaper into its copy of this package: safe to replace. */
function isNpmLinkToUs(path: string): boolean {
  try {
    if (!lstatSync(path).isSymbolicLink()) return false;
    findPackageRoot(realpathSync(path));
    return true;
  } catch {
    return false; // dangling or unreadable link: not provably ours
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** Writes through a temporary file and rename, so a crash never leaves half a file. */
function writeAtomically(path: string, content: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const temporary = `${path}.tmp-${randomBytes(4).toString("hex")}`;
  writeFileSync(temporary, content, { mode });
  renameSync(temporary, path);
}

function loadsUnixDgram(libDir: string): boolean {
  try {
    createRequire(join(libDir, "package.json"))("unix-dgram");
    return true;
  } catch {
    return false; // not built: reported as a warning by the caller
  }
}

/** Which native outputs `packageRoot` has built: what install copies, and records so the installed copy can explain a missing one. */
export function builtNativeOutputs(packageRoot: string): InstallRecord["native"] {
  const native: InstallRecord["native"] = {};
  for (const [name, path] of Object.entries(NATIVE_OUTPUTS) as [NativeOutput, string][]) {
    native[name] = existsSync(join(packageRoot, path)) ? "installed" : "not built";
  }
  return native;
}

/**
 * Copies the program (PROGRAM_FILES, every native output that was built, the production dependencies)
 * into a fresh directory next to `libDir`, then swaps them. The image is staged by the same call
 * (scripts/stage-program.mjs), so what install ships and what the image ships cannot drift apart.
 */
export function copyProgram(packageRoot: string, libDir: string, installedBy: InstallRecord["installedBy"] = "ptyreaper install"): InstallRecord {
  const parent = dirname(libDir);
  mkdirSync(parent, { recursive: true, mode: 0o755 });
  const suffix = randomBytes(4).toString("hex");
  const staging = `${libDir}.new-${suffix}`;
  mkdirSync(staging, { mode: 0o755 });
  const record: InstallRecord = { installedBy, native: builtNativeOutputs(packageRoot) };
  try {
    for (const name of PROGRAM_FILES) {
      const source = join(packageRoot, name);
      if (!existsSync(source)) {
        // The license and docs are for people; everything else is read at run time.
        if (name === "LICENSE" || name === "docs" || name === "README.md") continue;
        throw new InstallError(`${source} is missing: the program needs it (run \`npm ci\` in ${packageRoot})`);
      }
      cpSync(source, join(staging, name), { recursive: true, dereference: true });
    }
    for (const [name, path] of Object.entries(NATIVE_OUTPUTS) as [NativeOutput, string][]) {
      if (record.native[name] === "installed") cpSync(join(packageRoot, path), join(staging, path), { dereference: true });
    }
    writeFileSync(join(staging, INSTALL_RECORD), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    for (const copy of productionDependencies(packageRoot)) {
      const nested = join(copy.source, "node_modules");
      // Nested node_modules are copied as dependencies of their own, so dev-only ones stay behind.
      cpSync(copy.source, join(staging, copy.target), {
        recursive: true,
        dereference: true,
        filter: (path) => path !== nested && !path.startsWith(`${nested}${sep}`),
      });
    }
    if (existsSync(libDir)) {
      const old = `${libDir}.old-${suffix}`;
      renameSync(libDir, old);
      renameSync(staging, libDir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(staging, libDir);
    }
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  return record;
}

function checkLayout({ root, prefix }: Layout): void {
  if (!isAbsolute(root)) throw new InstallError(`--root must be an absolute path: ${root}`);
  if (!isAbsolute(prefix)) throw new InstallError(`--prefix must be an absolute path: ${prefix}`);
}

export function install(options: InstallOptions): Report {
  checkLayout(options);
  const paths = installPaths(options);
  const steps: Step[] = [];
  const warnings: string[] = [];
  const { packageRoot, dryRun } = options;

  if (!existsSync(join(packageRoot, "dist", "main.js"))) {
    throw new InstallError(`${join(packageRoot, "dist", "main.js")} is missing: run \`npm run build\` first`);
  }
  const template = readText(join(packageRoot, "systemd", "ptyreaper.service"));
  const defaultConfig = readText(join(packageRoot, "config", "ptyreaper.yaml"));
  if (template === null) throw new InstallError(`${join(packageRoot, "systemd", "ptyreaper.service")} is missing`);
  if (defaultConfig === null) throw new InstallError(`${join(packageRoot, "config", "ptyreaper.yaml")} is missing`);
  const unit = unitText(template, paths.hostBin);
  const launcher = launcherText(options.nodePath, paths);

  // Refuse before writing anything if a path holds something that is not ours.
  if (exists(paths.libDir) && !isPtyreaperPackage(paths.libDir)) {
    throw new InstallError(`${paths.libDir} exists and is not a ptyreaper install; move it away or choose another --prefix`);
  }
  const launcherIsNpmLink = exists(paths.binFile) && !isOurLauncher(paths.binFile) && isNpmLinkToUs(paths.binFile);
  if (exists(paths.binFile) && !isOurLauncher(paths.binFile) && !launcherIsNpmLink) {
    throw new InstallError(`${paths.binFile} exists and was not written by ptyreaper install; move it away or choose another --prefix`);
  }
  const currentUnit = readText(paths.unitFile);
  if (currentUnit !== null && !currentUnit.includes(UNIT_MARK)) {
    throw new InstallError(`${paths.unitFile} exists and was not written by ptyreaper install; move it away first`);
  }

  // The program.
  const hadProgram = exists(paths.libDir);
  const native = dryRun ? builtNativeOutputs(packageRoot) : copyProgram(packageRoot, paths.libDir).native;
  const builtNames = (Object.keys(native) as NativeOutput[]).filter((name) => native[name] === "installed");
  steps.push({
    what: "program",
    path: paths.libDir,
    outcome: hadProgram ? "replaced" : "installed",
    note: `native: ${builtNames.join(", ") || "none"}`,
  });
  for (const name of Object.keys(native) as NativeOutput[]) {
    if (native[name] === "not built") warnings.push(`${join(packageRoot, NATIVE_OUTPUTS[name])} was not built, so ${WITHOUT_NATIVE_OUTPUT[name]}`);
  }

  // The launcher.
  const currentLauncher = readText(paths.binFile);
  const launcherOutcome: Outcome = currentLauncher === launcher ? "unchanged" : exists(paths.binFile) ? "updated" : "installed";
  if (!dryRun && launcherOutcome !== "unchanged") {
    if (launcherIsNpmLink) rmSync(paths.binFile);
    writeAtomically(paths.binFile, launcher, 0o755);
  }
  steps.push({
    what: "launcher",
    path: paths.binFile,
    outcome: launcherOutcome,
    ...(launcherIsNpmLink ? { note: "replaced npm's link to this package" } : {}),
  });

  // The unit: always ours to overwrite; local changes belong in drop-ins.
  const unitOutcome: Outcome = currentUnit === unit ? "unchanged" : currentUnit === null ? "installed" : "updated";
  if (!dryRun && unitOutcome !== "unchanged") writeAtomically(paths.unitFile, unit, 0o644);
  steps.push({ what: "unit", path: paths.unitFile, outcome: unitOutcome });

  // The config: written only when absent, never over an edited one.
  const currentConfig = readText(paths.configFile);
  if (currentConfig === null) {
    if (!dryRun) {
      mkdirSync(paths.configDir, { recursive: true, mode: 0o755 });
      writeFileSync(paths.configFile, defaultConfig, { mode: 0o644, flag: "wx" });
    }
    steps.push({ what: "config", path: paths.configFile, outcome: "installed" });
  } else if (currentConfig === defaultConfig) {
    steps.push({ what: "config", path: paths.configFile, outcome: "unchanged" });
  } else {
    steps.push({
      what: "config",
      path: paths.configFile,
      outcome: "kept",
      note: `it differs from the shipped default, so it was left alone; the default is in ${join(paths.hostLibDir, "config", "ptyreaper.yaml")}`,
    });
  }

  if (HIDDEN_BY_PROTECT_HOME.some((dir) => options.nodePath.startsWith(dir))) {
    warnings.push(
      `the launcher runs ${options.nodePath}, which the unit's ProtectHome=yes hides from the service: ` +
        "install Node.js system-wide (e.g. /usr/bin/node) and run install again with it",
    );
  }
  const canNotify = options.canNotify ?? loadsUnixDgram;
  if (!canNotify(dryRun ? packageRoot : paths.libDir)) {
    warnings.push(
      "the unix-dgram addon is not built, so the daemon cannot tell systemd it is ready (Type=notify, NotifyAccess=main): " +
        `install a C++ toolchain (apt-get install build-essential python3) and run \`npm rebuild unix-dgram\` in ${paths.libDir}, ` +
        "or add NotifyAccess=all in a drop-in (the systemd-notify fallback)",
    );
  }
  return { steps, warnings };
}

export interface UninstallOptions extends Layout {
  purge: boolean;
  dryRun: boolean;
}

export function uninstall(options: UninstallOptions): Report {
  checkLayout(options);
  const paths = installPaths(options);
  const steps: Step[] = [];
  const warnings: string[] = [];
  const { dryRun } = options;
  const remove = (path: string): void => {
    if (!dryRun) rmSync(path, { recursive: true, force: true });
  };

  if (exists(paths.wantsLink)) {
    throw new InstallError("ptyreaper.service is still enabled: run `systemctl disable --now ptyreaper` first");
  }

  // Compare the config with the default before the program (which holds the default) is gone.
  const installedDefault = readText(join(paths.libDir, "config", "ptyreaper.yaml"));
  const currentConfig = readText(paths.configFile);

  const unit = readText(paths.unitFile);
  if (unit === null) steps.push({ what: "unit", path: paths.unitFile, outcome: "absent" });
  else if (unit.includes(UNIT_MARK)) {
    remove(paths.unitFile);
    steps.push({ what: "unit", path: paths.unitFile, outcome: "removed" });
  } else steps.push({ what: "unit", path: paths.unitFile, outcome: "left", note: "not written by ptyreaper install" });

  if (!exists(paths.binFile)) steps.push({ what: "launcher", path: paths.binFile, outcome: "absent" });
  else if (isOurLauncher(paths.binFile)) {
    remove(paths.binFile);
    steps.push({ what: "launcher", path: paths.binFile, outcome: "removed" });
  } else steps.push({ what: "launcher", path: paths.binFile, outcome: "left", note: "not written by ptyreaper install" });

  if (!exists(paths.libDir)) steps.push({ what: "program", path: paths.libDir, outcome: "absent" });
  else if (isPtyreaperPackage(paths.libDir)) {
    remove(paths.libDir);
    steps.push({ what: "program", path: paths.libDir, outcome: "removed" });
  } else steps.push({ what: "program", path: paths.libDir, outcome: "left", note: "not a ptyreaper install" });

  if (currentConfig === null) steps.push({ what: "config", path: paths.configFile, outcome: "absent" });
  else if (options.purge || currentConfig === installedDefault) {
    remove(paths.configFile);
    steps.push({ what: "config", path: paths.configFile, outcome: "removed", ...(options.purge ? { note: "--purge" } : {}) });
  } else {
    steps.push({ what: "config", path: paths.configFile, outcome: "kept", note: "edited; --purge removes it" });
  }
  if (!dryRun && existsSync(paths.configDir) && statSync(paths.configDir).isDirectory() && readdirSync(paths.configDir).length === 0) {
    rmdirSync(paths.configDir);
  }
  return { steps, warnings };
}
