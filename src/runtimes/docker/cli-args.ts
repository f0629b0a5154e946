// Pure: what a `docker` CLI process's argv says, as far as pairing it with an exec needs (docker 20.10+ flags).

/**
 * `exec`: a `docker [global flags] exec|container exec [flags] CONTAINER COMMAND…`.
 * `other`: a docker command that is not exec. `unreadable`: it may be an exec but its flags are
 * not ones we know, so it could name any container: a pairing must treat it as a possible client.
 */
export type DockerCliCommand =
  { kind: "exec"; container: string; command: string[]; tty: boolean } | { kind: "other" } | { kind: "unreadable"; why: string };

/** Flags that take a value; the rest of the known flags are booleans. Long names, with their one-letter forms. */
interface FlagSet {
  valued: ReadonlySet<string>;
  boolean: ReadonlySet<string>;
  short: ReadonlyMap<string, string>;
}

function flagSet(valued: string[], boolean: string[], short: Record<string, string>): FlagSet {
  return { valued: new Set(valued), boolean: new Set(boolean), short: new Map(Object.entries(short)) };
}

// cli/flags/common.go and cmd/docker/docker.go: global flags come before the command (TraverseChildren).
const GLOBAL = flagSet(
  ["config", "context", "host", "log-level", "tlscacert", "tlscert", "tlskey"],
  ["debug", "tls", "tlsverify", "version", "help"],
  { c: "context", H: "host", l: "log-level", D: "debug", v: "version", h: "help" },
);

// cli/command/container/exec.go: flags stop at CONTAINER (SetInterspersed(false)).
const EXEC = flagSet(["detach-keys", "env", "env-file", "user", "workdir"], ["detach", "interactive", "privileged", "tty", "help"], {
  d: "detach",
  e: "env",
  i: "interactive",
  t: "tty",
  u: "user",
  w: "workdir",
  h: "help",
});

const BOOL_VALUES = new Map([
  ["true", true],
  ["1", true],
  ["t", true],
  ["T", true],
  ["TRUE", true],
  ["True", true],
  ["false", false],
  ["0", false],
  ["f", false],
  ["F", false],
  ["FALSE", false],
  ["False", false],
]);

type FlagsResult = { ok: true; next: number; booleans: Map<string, boolean> } | { ok: false; why: string };

/** pflag's syntax: `--name`, `--name=v`, `--name v`, `-x`, `-xv`, `-x v`, `-x=v`, groups `-it`; `--` ends flags. */
function readFlags(args: readonly string[], start: number, set: FlagSet): FlagsResult {
  const booleans = new Map<string, boolean>();
  let i = start;
  const setBoolean = (name: string, value: string | undefined): string | null => {
    if (value === undefined) {
      booleans.set(name, true);
      return null;
    }
    const parsed = BOOL_VALUES.get(value);
    if (parsed === undefined) return `--${name}=${value} is not a boolean`;
    booleans.set(name, parsed);
    return null;
  };
  while (i < args.length) {
    const arg = args[i] as string;
    if (arg === "--") return { ok: true, next: i + 1, booleans };
    if (!arg.startsWith("-") || arg === "-") break;
    i++;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const value = eq < 0 ? undefined : arg.slice(eq + 1);
      if (set.boolean.has(name)) {
        const problem = setBoolean(name, value);
        if (problem) return { ok: false, why: problem };
      } else if (set.valued.has(name)) {
        if (value === undefined) {
          if (i >= args.length) return { ok: false, why: `--${name} has no value` };
          i++;
        }
      } else {
        return { ok: false, why: `unknown flag --${name}` };
      }
      continue;
    }
    // A group of one-letter flags: booleans until one that takes a value, which takes the rest or the next arg.
    for (let k = 1; k < arg.length; k++) {
      const letter = arg[k] as string;
      const name = set.short.get(letter);
      if (name === undefined) return { ok: false, why: `unknown flag -${letter}` };
      if (set.valued.has(name)) {
        if (k + 1 >= arg.length) {
          if (i >= args.length) return { ok: false, why: `-${letter} has no value` };
          i++;
        }
        break;
      }
      if (arg[k + 1] === "=") {
        const problem = setBoolean(name, arg.slice(k + 2));
        if (problem) return { ok: false, why: problem };
        break;
      }
      booleans.set(name, true);
    }
  }
  return { ok: true, next: i, booleans };
}

/** Whether a process is the docker CLI, by its argv[0] or its comm. */
export function isDockerCli(argv: readonly string[], comm: string): boolean {
  const base = (argv[0] ?? "").split("/").pop();
  return base === "docker" || comm === "docker";
}

export function parseDockerCli(argv: readonly string[]): DockerCliCommand {
  const mentionsExec = argv.slice(1).includes("exec");
  const unreadable = (why: string): DockerCliCommand => (mentionsExec ? { kind: "unreadable", why } : { kind: "other" });
  const global = readFlags(argv, 1, GLOBAL);
  if (!global.ok) return unreadable(global.why);
  let i = global.next;
  if (argv[i] === "container") i++;
  if (argv[i] !== "exec") return { kind: "other" };
  const flags = readFlags(argv, i + 1, EXEC);
  if (!flags.ok) return unreadable(flags.why);
  const container = argv[flags.next];
  const command = argv.slice(flags.next + 1);
  // The CLI itself refuses these: it never reaches the engine.
  if (container === undefined || command.length === 0 || flags.booleans.get("help") === true) return { kind: "other" };
  return { kind: "exec", container, command, tty: flags.booleans.get("tty") === true };
}
