// `ptyreaper install` and `ptyreaper uninstall`: put the daemon in place as a systemd service, or take it away.
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { EXIT } from "../errors.js";
import { findPackageRoot, install, InstallError, uninstall, type Report } from "../systemd/install.js";
import { parseFlags } from "./flags.js";
import type { CliIo, Command } from "./io.js";

const INSTALL_USAGE = "usage: ptyreaper install [--root DIR] [--prefix DIR] [--dry-run]";
const UNINSTALL_USAGE = "usage: ptyreaper uninstall [--root DIR] [--prefix DIR] [--purge] [--dry-run]";

export interface InstallCommandDeps {
  /** The package to install: found from this file, so a checkout and an npm-installed tarball both work. */
  packageRoot: () => string;
  nodePath: string;
  isRoot: () => boolean;
  canNotify?: (libDir: string) => boolean;
}

const defaultDeps: InstallCommandDeps = {
  packageRoot: () => findPackageRoot(fileURLToPath(import.meta.url)),
  nodePath: process.execPath,
  isRoot: () => process.getuid?.() === 0,
};

function print(io: CliIo, report: Report, dryRun: boolean): void {
  for (const step of report.steps) {
    const outcome = dryRun ? `would be ${step.outcome}` : step.outcome;
    io.stdout(`${step.what.padEnd(8)} ${outcome.padEnd(10)} ${step.path}${step.note ? `  (${step.note})` : ""}\n`);
  }
  for (const warning of report.warnings) io.stderr(`ptyreaper: warning: ${warning}\n`);
}

function layoutFrom(values: { root?: string | undefined; prefix?: string | undefined }, io: CliIo) {
  return { root: resolve(io.cwd, values.root ?? "/"), prefix: values.prefix ?? "/usr/local" };
}

function requireRoot(root: string, deps: InstallCommandDeps, verb: string): void {
  if (root === "/" && !deps.isRoot()) {
    throw new InstallError(`${verb} writes to /etc and the prefix: run it as root (sudo ptyreaper ${verb}), or use --root DIR`);
  }
}

export function makeInstallCommand(deps: InstallCommandDeps = defaultDeps): Command {
  return (args, io) => {
    const values = parseFlags(args, { root: { type: "string" }, prefix: { type: "string" }, "dry-run": { type: "boolean" } }, INSTALL_USAGE);
    const layout = layoutFrom(values, io);
    const dryRun = values["dry-run"] === true;
    if (!dryRun) requireRoot(layout.root, deps, "install");
    const report = install({
      ...layout,
      packageRoot: deps.packageRoot(),
      nodePath: deps.nodePath,
      dryRun,
      ...(deps.canNotify ? { canNotify: deps.canNotify } : {}),
    });
    print(io, report, dryRun);
    const rootFlag = layout.root === "/" ? "" : ` --root=${layout.root}`;
    io.stdout(
      dryRun
        ? "dry run: nothing was written\n"
        : layout.root === "/"
          ? "next:\n  systemctl daemon-reload && systemctl enable --now ptyreaper\n  journalctl -u ptyreaper -f\n"
          : `next (check the unit in that root):\n  systemd-analyze verify${rootFlag} /etc/systemd/system/ptyreaper.service\n`,
    );
    return Promise.resolve(EXIT.ok);
  };
}

export function makeUninstallCommand(deps: InstallCommandDeps = defaultDeps): Command {
  return (args, io) => {
    const values = parseFlags(
      args,
      { root: { type: "string" }, prefix: { type: "string" }, purge: { type: "boolean" }, "dry-run": { type: "boolean" } },
      UNINSTALL_USAGE,
    );
    const layout = layoutFrom(values, io);
    const dryRun = values["dry-run"] === true;
    if (!dryRun) requireRoot(layout.root, deps, "uninstall");
    const report = uninstall({ ...layout, purge: values.purge === true, dryRun });
    print(io, report, dryRun);
    io.stdout(dryRun ? "dry run: nothing was removed\n" : layout.root === "/" ? "next:\n  systemctl daemon-reload\n" : "");
    return Promise.resolve(EXIT.ok);
  };
}

export const installCommand: Command = makeInstallCommand();
export const uninstallCommand: Command = makeUninstallCommand();
