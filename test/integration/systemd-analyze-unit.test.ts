// The shipped unit through Debian's systemd-analyze: security exposure ≤ 2.2, and a clean verify of a real install into a temporary root.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeInstallCommand, makeUninstallCommand } from "../../src/cli/install.js";
import type { CliIo } from "../../src/cli/io.js";

const CHECKOUT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const UNIT = join(CHECKOUT, "systemd", "ptyreaper.service");
const MAX_EXPOSURE = 2.2;

/**
 * Each check systemd-analyze may still fail, and a word that the unit's "# Exposure:" comments must
 * contain to explain it. A new failing check makes the test fail until it is explained here and there.
 */
const EXPLAINED: Record<string, string> = {
  "RootDirectory=/RootImage=": "RootDirectory",
  "User=/DynamicUser=": "runs as root",
  "CapabilityBoundingSet=~CAP_KILL": "CAP_KILL",
  "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)": "CAP_DAC_READ_SEARCH",
  "CapabilityBoundingSet=~CAP_SYS_PTRACE": "CAP_SYS_PTRACE",
  "MemoryDenyWriteExecute=": "MemoryDenyWriteExecute",
  "RestrictAddressFamilies=~AF_UNIX": "AF_UNIX",
  "RestrictAddressFamilies=~AF_(INET|INET6)": "AF_INET",
  "RestrictAddressFamilies=~AF_NETLINK": "AF_NETLINK",
  "ProtectProc=": "ProtectProc",
  "ProcSubset=": "ProcSubset",
  "PrivateNetwork=": "PrivateNetwork",
  "PrivateUsers=": "PrivateUsers",
  "DeviceAllow=": "char-rtc",
  "IPAddressDeny=": "IP allow list",
};

function tool(name: string): string {
  const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  if (found.status !== 0) throw new Error(`${name} is missing: install the systemd package (sudo bash scripts/provision-test-host.sh)`);
  return found.stdout.trim();
}

function analyze(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(tool("systemd-analyze"), args, { encoding: "utf8", env: { ...process.env, SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface Security {
  exposure: number;
  failing: string[];
}

function security(args: string[]): Security {
  const { status, stdout, stderr } = analyze(["security", "--offline=true", "--no-pager", ...args]);
  expect(stderr, "systemd-analyze security printed warnings").toBe("");
  expect(status).toBe(0);
  const overall = /Overall exposure level for ptyreaper\.service: (\d+(?:\.\d+)?)/.exec(stdout);
  if (!overall?.[1]) throw new Error(`no overall exposure in:\n${stdout}`);
  const failing = stdout
    .split("\n")
    .filter((line) => line.startsWith("✗"))
    .map((line) => line.slice(1).trim().split(/\s+/)[0] ?? "");
  return { exposure: Number(overall[1]), failing };
}

const silentIo = (cwd: string): CliIo & { out: string } => {
  const io = {
    out: "",
    env: {},
    cwd,
    stdout: (text: string) => {
      io.out += text;
    },
    stderr: (text: string) => {
      io.out += text;
    },
  };
  return io;
};

describe("systemd-analyze security", () => {
  it(`rates systemd/ptyreaper.service at most ${MAX_EXPOSURE}`, () => {
    const { exposure } = security([UNIT]);
    expect(exposure).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it("finds only exposures the unit explains in an '# Exposure:' comment", () => {
    const { failing } = security([UNIT]);
    const comments = readFileSync(UNIT, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("#"))
      .join("\n");
    const exposureComments = comments
      .split(/^# Exposure:/m)
      .slice(1)
      .join("\n");
    expect(failing.length).toBeGreaterThan(0);
    for (const check of failing) {
      const word = EXPLAINED[check];
      expect(word, `systemd-analyze flags ${check}: explain it in the unit and in EXPLAINED`).toBeDefined();
      expect(exposureComments, `no "# Exposure:" comment mentions ${word} (for ${check})`).toContain(word);
    }
  });
});

describe("systemd/bpf-finder.conf as a drop-in (the BPF finder's capabilities)", () => {
  const DROP_IN = join(CHECKOUT, "systemd", "bpf-finder.conf");
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "ptyreaper-dropin-"));
    const dir = join(root, "etc/systemd/system");
    mkdirSync(join(dir, "ptyreaper.service.d"), { recursive: true });
    writeFileSync(join(dir, "ptyreaper.service"), readFileSync(UNIT));
    writeFileSync(join(dir, "ptyreaper.service.d", "bpf-finder.conf"), readFileSync(DROP_IN));
    mkdirSync(join(root, "usr/local/bin"), { recursive: true });
    writeFileSync(join(root, "usr/local/bin/ptyreaper"), "#!/bin/sh\n", { mode: 0o755 });
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("adds CAP_BPF and CAP_PERFMON and allows bpf(2) again, costing what its comment says, each exposure explained", () => {
    const { exposure, failing } = security([`--root=${root}`, "/etc/systemd/system/ptyreaper.service"]);
    const text = readFileSync(DROP_IN, "utf8");
    expect(text).toContain(`rates the unit with this drop-in ${exposure.toFixed(1)} instead of ${MAX_EXPOSURE}`);
    const added = failing.filter((check) => EXPLAINED[check] === undefined);
    expect(added.sort()).toEqual(["CapabilityBoundingSet=~CAP_BPF", "SystemCallFilter=~@privileged"]);
    const exposures = text
      .split(/^# Exposure:/m)
      .slice(1)
      .join("\n");
    for (const word of ["CAP_BPF", "bpf(2)"]) expect(exposures).toContain(word);
    // systemd reads the filter in order: the unit's allow list, its deny list, then the drop-in's allow entry.
    const values = [
      ...directives("SystemCallFilter"),
      ...text
        .split("\n")
        .filter((line) => line.startsWith("SystemCallFilter="))
        .map((line) => line.slice(17).trim()),
    ];
    const effective = orderedFilter(values);
    expect(effective.has("bpf")).toBe(true);
    for (const call of ["process_vm_readv", "ptrace", "perf_event_open", "init_module"]) expect(effective.has(call), call).toBe(false);
    expect(orderedFilter(directives("SystemCallFilter")).has("bpf")).toBe(false);
  });
});

/** The calls an allow-list filter lets through, its assignments read in order as systemd does (a later allow entry adds back). */
function orderedFilter(values: readonly string[]): Set<string> {
  const allowed = new Set<string>();
  for (const value of values) {
    const deny = value.startsWith("~");
    for (const entry of value.replace(/^~/, "").split(/\s+/)) {
      for (const call of expandSyscalls(entry)) {
        if (deny) allowed.delete(call);
        else allowed.add(call);
      }
    }
  }
  return allowed;
}

/** The syscalls a group stands for, nested groups expanded, as this systemd knows them. */
function expandSyscalls(entry: string, seen = new Set<string>()): Set<string> {
  if (!entry.startsWith("@")) return new Set([entry]);
  if (seen.has(entry)) return new Set();
  seen.add(entry);
  const { status, stdout, stderr } = analyze(["syscall-filter", "--no-pager", entry]);
  if (status !== 0) throw new Error(`systemd-analyze syscall-filter ${entry}: ${stderr}`);
  const names = new Set<string>();
  for (const line of stdout.split("\n").slice(1)) {
    const name = line.trim();
    if (name === "" || name.startsWith("#")) continue;
    for (const call of expandSyscalls(name, seen)) names.add(call);
  }
  return names;
}

/** The unit's directive values, in order (a directive may repeat). */
function directives(name: string): string[] {
  return readFileSync(UNIT, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`${name}=`))
    .map((line) => line.slice(name.length + 1).trim());
}

/** Bytes of a systemd size like "512M". */
function bytes(size: string): number {
  const m = /^(\d+)([KMG]?)$/.exec(size);
  if (!m?.[1]) throw new Error(`not a size: ${size}`);
  return Number(m[1]) * 1024 ** " KMG".indexOf(m[2] || " ");
}

describe("the unit's system call filter and resource ceilings", () => {
  it("allows what the daemon calls but not another process's memory: process_vm_readv/writev and ptrace are denied", () => {
    const allowed = new Set<string>();
    const denied = new Set<string>();
    for (const value of directives("SystemCallFilter")) {
      const deny = value.startsWith("~");
      for (const entry of value.replace(/^~/, "").split(/\s+/)) {
        for (const call of expandSyscalls(entry)) (deny ? denied : allowed).add(call);
      }
    }
    const effective = new Set([...allowed].filter((call) => !denied.has(call)));
    // Without the deny list, @system-service would let them through (in @ipc): the denial is the unit's doing.
    expect(expandSyscalls("@system-service").has("process_vm_readv")).toBe(true);
    for (const call of ["process_vm_readv", "process_vm_writev", "ptrace", "pidfd_getfd"]) expect(effective.has(call), call).toBe(false);
    // What the daemon does need: reading /proc, signalling through pidfds, V8's memory protection keys.
    for (const call of ["openat", "read", "readlinkat", "kill", "pidfd_open", "pidfd_send_signal", "pkey_mprotect", "socket", "connect"]) {
      expect(effective.has(call), call).toBe(true);
    }
  });

  it("MemoryMax is at least twice the hostile-container RSS (250 MiB) and TasksMax is set, with a reason beside each", () => {
    const [memoryMax] = directives("MemoryMax");
    const [tasksMax] = directives("TasksMax");
    expect(memoryMax, "MemoryMax= in the unit").toBeDefined();
    expect(tasksMax, "TasksMax= in the unit").toBeDefined();
    expect(bytes(memoryMax ?? "")).toBeGreaterThanOrEqual(2 * 250 * 1024 ** 2);
    // A ceiling, not a formality: well below what a host has.
    expect(bytes(memoryMax ?? "")).toBeLessThanOrEqual(1024 ** 3);
    expect(Number(tasksMax)).toBeGreaterThanOrEqual(32);
    expect(Number(tasksMax)).toBeLessThanOrEqual(256);
    const text = readFileSync(UNIT, "utf8");
    expect(text).toMatch(/RSS peaks at 108 MiB[\s\S]*\nMemoryMax=/);
    expect(text).toMatch(/13 threads[\s\S]*\nTasksMax=/);
  });
});

describe("ptyreaper install into a temporary root, then systemd-analyze verify", () => {
  let work: string;
  let root: string;
  let installOutput: string;

  beforeAll(async () => {
    if (!existsSync(join(CHECKOUT, "dist", "main.js"))) throw new Error("dist/main.js is missing: run `npm run build` (npm test does)");
    work = mkdtempSync(join(tmpdir(), "ptyreaper-verify-"));
    root = join(work, "root");
    const io = silentIo(work);
    const code = await makeInstallCommand()(["--root", root], io);
    installOutput = io.out;
    expect(code).toBe(0);
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("prints what it did and how to check it", () => {
    expect(installOutput).toMatch(/^program +installed /m);
    expect(installOutput).toMatch(/^unit +installed .*\/etc\/systemd\/system\/ptyreaper.service$/m);
    expect(installOutput).toContain(`systemd-analyze verify --root='${root}' /etc/systemd/system/ptyreaper.service`);
    expect(installOutput).not.toContain("warning");
  });

  it("passes systemd-analyze verify, run exactly as install printed it, with no output at all", () => {
    // The printed recipe copies systemd's own units and kill into the empty root, then verifies.
    const commands = installOutput
      .slice(installOutput.indexOf("next"))
      .split("\n")
      .filter((line) => line.startsWith("  ") && !line.trimStart().startsWith("#"))
      .map((line) => line.trim());
    expect(commands[commands.length - 2]).toMatch(/^systemd-analyze verify /);
    for (const command of commands.slice(0, -1)) {
      const result = spawnSync("sh", ["-c", command], { encoding: "utf8", env: { ...process.env, SYSTEMD_COLORS: "0" } });
      expect(result.stderr, command).toBe("");
      expect(result.stdout, command).toBe("");
      expect(result.status, command).toBe(0);
    }
  });

  it("has a verify that does fail on a broken unit (so the clean result means something)", () => {
    const unitPath = join(root, "etc/systemd/system/ptyreaper-broken.service");
    const broken = readFileSync(join(root, "etc/systemd/system/ptyreaper.service"), "utf8")
      .replace("ProtectSystem=strict", "ProtectSytem=strict")
      .replace(/^ExecStart=\S+/m, "ExecStart=/usr/local/bin/ptyreaper-missing");
    writeFileSync(unitPath, broken);
    const { stderr } = analyze(["verify", `--root=${root}`, "/etc/systemd/system/ptyreaper-broken.service"]);
    rmSync(unitPath);
    expect(stderr).toContain("Unknown key 'ProtectSytem'");
    expect(stderr).toContain("ptyreaper-missing is not executable");
  });

  it(`rates the installed unit at most ${MAX_EXPOSURE} too`, () => {
    expect(security([`--root=${root}`, "/etc/systemd/system/ptyreaper.service"]).exposure).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it("runs the installed copy on its own: --version, check-config of the installed config, the notify addon", () => {
    const lib = join(root, "usr/local/lib/ptyreaper");
    const pkg = JSON.parse(readFileSync(join(CHECKOUT, "package.json"), "utf8")) as { version: string };
    const version = spawnSync(process.execPath, [join(lib, "dist/main.js"), "--version"], { encoding: "utf8" });
    // The installed copy carries the build's revision file (dist/revision.txt), as a checkout's build does.
    const revision = readFileSync(join(CHECKOUT, "dist/revision.txt"), "utf8").trim();
    expect(version.stdout.trim()).toBe(`ptyreaper ${pkg.version} (revision ${revision})`);
    const check = spawnSync(process.execPath, [join(lib, "dist/main.js"), "check-config", join(root, "etc/ptyreaper/config.yaml")], {
      encoding: "utf8",
    });
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
    const addon = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(join(lib, "node_modules/unix-dgram"))})`], { encoding: "utf8" });
    expect(addon.stderr).toBe("");
    expect(addon.status).toBe(0);
    // Only production dependencies were copied.
    const modules = readdirSync(join(lib, "node_modules"));
    expect(modules).toEqual(expect.arrayContaining(["fastify", "zod", "prom-client", "dockerode", "pino", "yaml"]));
    for (const dev of ["vitest", "typescript", "eslint", "fast-check"]) expect(modules).not.toContain(dev);
  });

  it("uninstalls back to the host-like root it started from", async () => {
    const io = silentIo(work);
    expect(await makeUninstallCommand()(["--root", root], io)).toBe(0);
    for (const gone of ["usr/local/lib/ptyreaper", "usr/local/bin/ptyreaper", "etc/ptyreaper", "etc/systemd/system/ptyreaper.service"]) {
      expect(existsSync(join(root, gone)), gone).toBe(false);
    }
  });
});
