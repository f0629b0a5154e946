// `ptyreaper check-config FILE`: ok + summary on stdout, one line per problem on stderr, sysexits codes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfigCommand, procRootProblem } from "../../../src/cli/check-config.js";
import type { CliIo } from "../../../src/cli/io.js";
import { EXIT, UsageError } from "../../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "ptyreaper-check-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return name;
}

async function check(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CliIo = { stdout: (t) => (out += t), stderr: (t) => (err += t), env, cwd: dir };
  const code = await checkConfigCommand(args, io);
  return { code, out, err };
}

describe("check-config", () => {
  it("a valid file: FILE: ok and the normalised summary, exit 0", async () => {
    const name = file("ok.yaml", "listen: '[::1]:9000'\npolicy:\n  idleTimeout: 90m\n  exemptContainers: [build-*, db]\n");
    const r = await check([name], { PTYREAPER_MODE: "dry-run" });
    expect(r.code).toBe(EXIT.ok);
    expect(r.err).toBe("");
    expect(r.out).toBe(
      [
        "ok.yaml: ok",
        "  pollInterval 10s, listen [::1]:9000, procRoot /proc, log.level info",
        "  docker: enabled, socket /var/run/docker.sock, timeout 5s",
        "  runtimes: containerd auto (used when the socket exists), socket /run/containerd/containerd.sock, namespaces k8s.io, timeout 5s; podman auto (used when the socket exists), socket /run/podman/podman.sock, timeout 5s",
        "  policy: idleTimeout 1h30m (input and output), maxAge off, minAge 1m, orphanGrace 2m",
        "  policy.pressure: high 0.8, low 0.7, minIdle 10m",
        "  policy.exempt: label ptyreaper.exempt=true, containers build-* db, namespaces none",
        "  reaper: dry-run, grace 10s, maxPerCycle 20",
        "  commandLine argv0 (how much of an exec's command line GET /sessions shows)",
        "  http: plain, no authentication (webConfigFile null)",
        "  environment overrides: PTYREAPER_MODE=dry-run (reaper.mode)",
        "",
      ].join("\n"),
    );
  });

  it("summarises the web config in force: its file, TLS or not, and how many basic auth users", async () => {
    const web = join(dir, "web.yml");
    writeFileSync(web, "basic_auth_users:\n  prometheus: $2b$04$RjoKyLaoO71hkzYF0Vnyi.z/m8k2RRoojprfkfRFhtXGut2GDDaXK\n");
    const r = await check([file("web-ok.yaml", `webConfigFile: ${web}\ncommandLine: off\npolicy: {exemptNamespaces: [kube-system]}\n`)]);
    expect(r.err).toBe("");
    expect(r.out).toContain(`\n  http: webConfigFile ${web}: plain HTTP, basic auth for 1 user\n`);
    expect(r.out).toContain("\n  commandLine off (how much of an exec's command line GET /sessions shows)\n");
    expect(r.out).toContain(", namespaces kube-system\n");
  });

  it("the shipped config is ok", async () => {
    const shipped = new URL("../../../config/ptyreaper.yaml", import.meta.url).pathname;
    const r = await check([shipped]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.split("\n")[0]).toBe(`${shipped}: ok`);
  });

  it("docker disabled is summarised as such", async () => {
    const r = await check([file("nodocker.yaml", "docker: {enabled: false}\n")]);
    expect(r.out).toContain("  docker: disabled\n");
  });

  it("docker auto says when it is used", async () => {
    const r = await check([file("autodocker.yaml", "docker: {enabled: auto}\n")]);
    expect(r.out).toContain("  docker: auto (used when its socket exists at start), socket /var/run/docker.sock, timeout 5s\n");
  });

  it("problems: FILE: problem, one per line on stderr, exit 78, nothing on stdout", async () => {
    const name = file("bad.yaml", "pollInterval: 10\npolicy:\n  idelTimeout: 4h\n");
    const r = await check([name]);
    expect(r.code).toBe(EXIT.config);
    expect(r.code).toBe(78);
    expect(r.out).toBe("");
    expect(r.err).toBe(
      `bad.yaml: pollInterval: expected a duration like "30s", "10m" or "4h", got 10: add a unit, e.g. "10s"\n` +
        "bad.yaml: policy.idelTimeout: unknown key (did you mean idleTimeout?)\n",
    );
  });

  it("an option is a usage error, not a file name", async () => {
    await expect(check(["--bogus"])).rejects.toBeInstanceOf(UsageError);
    await expect(check(["--bogus"])).rejects.toThrow(/unknown option "--bogus"; usage: ptyreaper check-config FILE/);
  });

  it("a procRoot that is not a procfs: one line naming the key, exit 78", async () => {
    const r = await check([file("notproc.yaml", `procRoot: ${dir}\n`)]);
    expect(r.code).toBe(EXIT.config);
    expect(r.out).toBe("");
    expect(r.err).toMatch(
      /^notproc\.yaml: procRoot: ".*" is not a procfs mount \(file system type 0x[0-9a-f]+\); expected where procfs is mounted, e\.g\. \/proc\n$/,
    );
    const missing = await check([file("noproc.yaml", "procRoot: /nonexistent/proc\n")]);
    expect(missing.err).toBe('noproc.yaml: procRoot: "/nonexistent/proc" cannot be read (ENOENT); expected where procfs is mounted, e.g. /proc\n');
  });

  it("a procRoot from PTYREAPER_PROC_ROOT is blamed on the variable, not the file", async () => {
    const r = await check([file("fine.yaml", "")], { PTYREAPER_PROC_ROOT: dir });
    expect(r.code).toBe(EXIT.config);
    expect(r.err).toMatch(/^environment: PTYREAPER_PROC_ROOT: procRoot: ".*" is not a procfs mount/);
  });

  it("procRootProblem: a procfs passes, whatever else is named with its type", () => {
    expect(procRootProblem("/proc")).toBeNull();
    expect(procRootProblem("/x", () => ({ type: 0x9fa0 }))).toBeNull();
    expect(procRootProblem("/x", () => ({ type: 0xef53 }))).toMatch(/0xef53/);
  });

  it("bad env values are reported too, named after the variable", async () => {
    const r = await check([file("env.yaml", "")], { DOCKER_HOST: "tcp://10.0.0.1:2375" });
    expect(r.code).toBe(78);
    expect(r.err).toMatch(/^environment: DOCKER_HOST: expected unix:\/\/\/path\/to\/docker\.sock, got "tcp:\/\/10\.0\.0\.1:2375": remote/);
  });

  it("invalid YAML: file, line and column on one line", async () => {
    const r = await check([file("broken.yaml", "log:\n  level: info\n  level: debug\n")]);
    expect(r.code).toBe(78);
    expect(r.err).toBe("broken.yaml: line 3, column 3: invalid YAML: Map keys must be unique\n");
  });

  it("an unreadable file: one line, exit 78", async () => {
    const r = await check(["missing.yaml"]);
    expect(r.code).toBe(78);
    expect(r.err).toBe(`cannot read config ${join(dir, "missing.yaml")}: no such file\n`);
  });

  it("a relative FILE is resolved against the io's cwd, and shown as typed", async () => {
    file("rel.yaml", "pollInterval: 2s\n");
    const r = await check(["./rel.yaml"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\.\/rel\.yaml: ok\n {2}pollInterval 2s,/);
  });

  it.each<[string[]]>([[[]], [["a.yaml", "b.yaml"]], [[""]]])("usage error for %j: exit 64", async (args) => {
    const r = await check(args);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toBe("usage: ptyreaper check-config FILE\n");
    expect(r.out).toBe("");
  });

  it("--help prints usage on stdout, exit 0", async () => {
    const r = await check(["--help"]);
    expect(r).toEqual({ code: 0, out: "usage: ptyreaper check-config FILE\n", err: "" });
  });
});
