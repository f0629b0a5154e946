// Table tests of the docker CLI argv parser: which processes are `docker exec -t` clients, of what.
import { describe, expect, it } from "vitest";
import { isDockerCli, parseDockerCli, type DockerCliCommand } from "../../../../src/runtimes/docker/cli-args.js";

const exec = (container: string, command: string[], tty = true): DockerCliCommand => ({ kind: "exec", container, command, tty });

describe("parseDockerCli", () => {
  it.each<[string, string[], DockerCliCommand]>([
    ["the seed's case", ["/usr/bin/docker", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["-ti", ["docker", "exec", "-ti", "web", "sh"], exec("web", ["sh"])],
    ["separate -i -t", ["docker", "exec", "-i", "-t", "web", "bash", "-l"], exec("web", ["bash", "-l"])],
    ["long forms", ["docker", "exec", "--interactive", "--tty", "web", "sh"], exec("web", ["sh"])],
    ["--tty=true", ["docker", "exec", "--tty=true", "web", "sh"], exec("web", ["sh"])],
    ["--tty=false", ["docker", "exec", "-i", "--tty=false", "web", "sh"], exec("web", ["sh"], false)],
    ["-t=false", ["docker", "exec", "-t=false", "web", "sh"], exec("web", ["sh"], false)],
    ["no -t: no tty", ["docker", "exec", "-i", "web", "sh"], exec("web", ["sh"], false)],
    ["container exec", ["docker", "container", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["id prefix", ["docker", "exec", "-it", "169baa59a577", "sh"], exec("169baa59a577", ["sh"])],
    ["-e VALUE", ["docker", "exec", "-it", "-e", "A=1", "web", "sh"], exec("web", ["sh"])],
    ["-eVALUE", ["docker", "exec", "-it", "-eA=1", "web", "sh"], exec("web", ["sh"])],
    ["-ite VALUE in a group", ["docker", "exec", "-ite", "A=1", "web", "sh"], exec("web", ["sh"])],
    ["--env=VALUE", ["docker", "exec", "-it", "--env=A=1", "web", "sh"], exec("web", ["sh"])],
    [
      "-u, -w, --detach-keys, --privileged",
      ["docker", "exec", "-u", "0", "-w", "/", "--detach-keys", "ctrl-x", "--privileged", "-it", "web", "sh"],
      exec("web", ["sh"]),
    ],
    ["--env-file", ["docker", "exec", "--env-file", "/tmp/e", "-it", "web", "sh"], exec("web", ["sh"])],
    ["flags after the container belong to the command", ["docker", "exec", "-it", "web", "ls", "-t", "--help"], exec("web", ["ls", "-t", "--help"])],
    ["-- ends flags", ["docker", "exec", "-it", "--", "web", "sh"], exec("web", ["sh"])],
    ["global -H", ["docker", "-H", "tcp://127.0.0.1:2375", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["global --host=", ["docker", "--host=unix:///run/other.sock", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["global -c and -D", ["docker", "-D", "-c", "remote", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["global --config and --tlsverify", ["docker", "--config", "/etc/d", "--tlsverify", "exec", "-it", "web", "sh"], exec("web", ["sh"])],
    ["a command named exec", ["docker", "exec", "-it", "web", "exec"], exec("web", ["exec"])],
    ["docker ps", ["docker", "ps"], { kind: "other" }],
    ["docker logs -f", ["docker", "logs", "-f", "web"], { kind: "other" }],
    ["docker run with exec as its command", ["docker", "run", "-it", "busybox", "exec"], { kind: "other" }],
    ["exec without a command (the CLI refuses it)", ["docker", "exec", "-it", "web"], { kind: "other" }],
    ["exec --help", ["docker", "exec", "--help", "web", "sh"], { kind: "other" }],
    ["unknown exec flag", ["docker", "exec", "--newflag", "-it", "web", "sh"], { kind: "unreadable", why: "unknown flag --newflag" }],
    ["unknown short flag in a group", ["docker", "exec", "-itx", "web", "sh"], { kind: "unreadable", why: "unknown flag -x" }],
    ["unknown global flag", ["docker", "--frobnicate", "exec", "-it", "web", "sh"], { kind: "unreadable", why: "unknown flag --frobnicate" }],
    ["value flag at the end", ["docker", "exec", "-it", "-e"], { kind: "unreadable", why: "-e has no value" }],
    ["bad boolean", ["docker", "exec", "--tty=maybe", "web", "sh"], { kind: "unreadable", why: "--tty=maybe is not a boolean" }],
    ["unknown flag, no exec anywhere", ["docker", "--frobnicate", "ps"], { kind: "other" }],
  ])("%s", (_name, argv, want) => {
    expect(parseDockerCli(argv)).toEqual(want);
  });
});

describe("isDockerCli", () => {
  it.each<[string[], string, boolean]>([
    [["/usr/bin/docker", "exec"], "docker", true],
    [["docker", "exec"], "docker", true],
    [["/usr/local/bin/docker"], "docker", true],
    [["/opt/x/docker-wrapper"], "docker", true],
    [["dockerd"], "dockerd", false],
    [["/usr/libexec/docker/cli-plugins/docker-compose", "compose", "exec"], "docker-compose", false],
    [["sh", "-c", "docker exec -it web sh"], "sh", false],
    [[], "docker", true],
  ])("%j (comm %s) → %s", (argv, comm, want) => {
    expect(isDockerCli(argv, comm)).toBe(want);
  });
});
