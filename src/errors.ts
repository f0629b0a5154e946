// Error classes with stable codes; each keeps its cause.

export type ErrorCode =
  | "PTYR_CONFIG_INVALID"
  | "PTYR_CONFIG_READ"
  | "PTYR_PROC_READ"
  | "PTYR_DOCKER_UNAVAILABLE"
  | "PTYR_DOCKER_TIMEOUT"
  | "PTYR_USAGE"
  | "PTYR_INSTALL"
  | "PTYR_SCAN_WORKER"
  | "PTYR_LISTEN"
  | "PTYR_RUNTIME_UNAVAILABLE"
  | "PTYR_AUTH_BUSY"
  | "PTYR_AUTH_WORKER";

export class PtyreaperError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class ConfigError extends PtyreaperError {
  /** One line per problem, e.g. `policy.idleTimeout: expected a duration like "30s"`. */
  readonly problems: string[];
  /** The file (or "--listen", "environment") the problems are in. */
  readonly source: string;
  constructor(source: string, problems: string[], options?: { cause?: unknown }) {
    super("PTYR_CONFIG_INVALID", `${source}: ${problems.join("; ")}`, options);
    this.problems = problems;
    this.source = source;
  }
}

export class UsageError extends PtyreaperError {
  constructor(message: string) {
    super("PTYR_USAGE", message);
  }
}

export class DockerUnavailableError extends PtyreaperError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PTYR_DOCKER_UNAVAILABLE", message, options);
  }
}

/** A container runtime (containerd, Podman) did not answer or refused a call; `runtime` names which. */
export class RuntimeUnavailableError extends PtyreaperError {
  constructor(
    readonly runtime: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super("PTYR_RUNTIME_UNAVAILABLE", message, options);
  }
}

/** Exit codes from sysexits.h, which systemd's RestartPreventExitStatus can name. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64,
  config: 78,
} as const;

/** "Gone" errors of /proc reads: the process exited between readdir and read. */
export function isVanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ESRCH";
}

/** Permission errors: not root, or a process protected from us (the scan counts it as unreadable). */
export function isDenied(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "EACCES" || code === "EPERM";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
