// `ptyreaper install` and `ptyreaper uninstall`: put the daemon in place as a systemd service, or take it away.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isAbsolute } from "node:path";
import { EXIT, UsageError } from "../errors.js";
import { findPackageRoot, install, InstallError, shellQuote, uninstall, type Report } from "../systemd/install.js";
import { parseFlags } from "./flags.js";
import { INSTALL_USAGE, UNINSTALL_USAGE } from "./help.js";
import type { CliIo, Command } from "./io.js";

const HOST_UNIT_DIRS = ["usr/lib/systemd/system", "lib/systemd/system"];

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

/** A relative --prefix is a usage error (64): it names where the unit will exec the program on the host. */
function layoutFrom(values: { root?: string | undefined; prefix?: string | undefined }, io: CliIo, usage: string) {
  const prefix = values.prefix ?? "/usr/local";
  if (!isAbsolute(prefix)) throw new UsageError(`--prefix must be an absolute path, got ${JSON.stringify(prefix)}; ${usage}`);
  if (/\s/.test(prefix)) throw new UsageError(`--prefix must not contain white space, got ${JSON.stringify(prefix)}; ${usage}`);
  return { root: resolve(io.cwd, values.root ?? "/"), prefix };
}

function requireRoot(root: string, deps: InstallCommandDeps, verb: string): void {
  if (root === "/" && !deps.isRoot()) {
    throw new InstallError(`${verb} writes to /etc and the prefix: run it as root (sudo ptyreaper ${verb}), or use --root DIR`);
  }
}

/** How to check an install in a test root; verify also loads systemd's own units and ExecReload's kill from there. */
export function verifyHint(root: string): string {
  const r = shellQuote(root);
  const lines = ["next (check the unit in that root):"];
  if (!HOST_UNIT_DIRS.some((dir) => existsSync(join(root, dir, "sysinit.target")))) {
    lines.push(
      "  # systemd-analyze looks up systemd's own units and /bin/kill inside the root: copy them there first",
      `  mkdir -p ${r}/usr/lib/systemd ${r}/usr/bin && cp -a /usr/lib/systemd/system ${r}/usr/lib/systemd/ && cp /usr/bin/kill ${r}/usr/bin/ && ln -sfn usr/bin ${r}/bin`,
    );
  }
  lines.push(`  systemd-analyze verify --root=${r} /etc/systemd/system/ptyreaper.service`);
  lines.push(`  systemd-analyze security --offline=true --root=${r} /etc/systemd/system/ptyreaper.service`);
  return `${lines.join("\n")}\n`;
}

export function makeInstallCommand(deps: InstallCommandDeps = defaultDeps): Command {
  return (args, io) => {
    const values = parseFlags(args, { root: { type: "string" }, prefix: { type: "string" }, "dry-run": { type: "boolean" } }, INSTALL_USAGE);
    const layout = layoutFrom(values, io, INSTALL_USAGE);
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
    if (dryRun) io.stdout("dry run: nothing was written\n");
    else if (layout.root === "/") io.stdout("next:\n  systemctl daemon-reload && systemctl enable --now ptyreaper\n  journalctl -u ptyreaper -f\n");
    else io.stdout(verifyHint(layout.root));
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
    const layout = layoutFrom(values, io, UNINSTALL_USAGE);
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
