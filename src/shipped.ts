// What a running ptyreaper needs beside its node_modules: the one list that `install`, the image and the loaders read.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_NAME = "ptyreaper";

/**
 * What the native build leaves at the package root (node-gyp's addons from binding.gyp, the BPF object
 * from native/build-bpf.sh). Each is optional at run time: without it the program says so and falls back.
 */
export const NATIVE_OUTPUTS = {
  /** The /proc scan's fd-link reader and the BPF finder's loader. */
  ptyscan: "build/Release/ptyscan.node",
  /** Signals through pidfds, closing the pid-reuse window. */
  pidfd: "build/Release/pidfd.node",
  /** sock_diag: which unix socket each runtime client is connected to. */
  sockdiag: "build/Release/sockdiag.node",
  /** The BPF task_file iterator that names pty fds in the kernel. */
  bpfFinder: "build/Release/ptyfds.bpf.o",
} as const;

export type NativeOutput = keyof typeof NATIVE_OUTPUTS;

/** What the program does without each output: install's warning when one was not built. */
export const WITHOUT_NATIVE_OUTPUT: Readonly<Record<NativeOutput, string>> = {
  ptyscan: "the /proc scan falls back to the slower JS reader",
  pidfd: "signals go through kill(2) after a start-time check instead of pidfds",
  sockdiag: "exec clients cannot be seen and orphanGrace never applies",
  bpfFinder: "`ptyreaper sessions` and the daemon's full passes read every fd link (install clang to build it)",
};

/** The program's own files, relative to the package root; dependencies are found from package.json. */
export const PROGRAM_FILES = ["package.json", "dist", "proto", "config", "systemd", "docs", "README.md", "LICENSE"] as const;

/** What `install` writes beside the program: which native outputs it copied, so a missing one is explained. */
export const INSTALL_RECORD = "install-record.json";

export interface InstallRecord {
  /** `ptyreaper install`, or the image's build (scripts/stage-program.mjs). */
  installedBy: "ptyreaper install" | "image build";
  /** The native outputs that were built when this copy was made, and those that were not. */
  native: Partial<Record<NativeOutput, "installed" | "not built">>;
}

function isOurPackage(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false; // absent or not JSON: not our package root
  }
}

/** The nearest directory above `fromFile` whose package.json is ptyreaper's, or null. */
export function packageRootAbove(fromFile: string): string | null {
  for (let dir = dirname(fromFile); ; dir = dirname(dir)) {
    if (isOurPackage(dir)) return dir;
    if (dir === dirname(dir)) return null;
  }
}

let ownRoot: string | null | undefined;
/** The package this code runs from: a checkout, an npm install, an installed copy or the image. */
export function ownPackageRoot(): string | null {
  if (ownRoot === undefined) ownRoot = packageRootAbove(fileURLToPath(import.meta.url));
  return ownRoot;
}

/** Where `relative` is in the package this code runs from (relative to this file when no package.json is found). */
export function shippedPath(relative: string): string {
  return join(ownPackageRoot() ?? join(dirname(fileURLToPath(import.meta.url)), ".."), relative);
}

function readRecord(root: string): InstallRecord | null {
  try {
    return JSON.parse(readFileSync(join(root, INSTALL_RECORD), "utf8")) as InstallRecord;
  } catch {
    return null; // not an installed copy (a checkout or an npm install), or a record we cannot read
  }
}

/**
 * Why a shipped file is not there, in words that say what to do: in a checkout it was not built; in a
 * copy written by `install` it was either not built at install time or lost since, and a reinstall fixes it.
 */
export function missingFileReason(path: string, root: string | null = ownPackageRoot()): string {
  const record = root === null ? null : readRecord(root);
  if (record === null) return `${path} is not built`;
  const output = (Object.keys(NATIVE_OUTPUTS) as NativeOutput[]).find((name) => join(root as string, NATIVE_OUTPUTS[name]) === path);
  const again = record.installedBy === "image build" ? "rebuild the image" : "run `ptyreaper install` again";
  if (output !== undefined && record.native[output] === "not built") {
    return `${path} was not built when this copy was installed: build it (npm ci with a C toolchain), then ${again}`;
  }
  return `${path} is missing from this installed copy: reinstall it (${again} from a built checkout)`;
}

/** The path of a native output, or why it cannot be used. */
export function nativeOutput(name: NativeOutput): { path: string; missing: string | null } {
  const path = shippedPath(NATIVE_OUTPUTS[name]);
  return { path, missing: existsSync(path) ? null : missingFileReason(path) };
}
