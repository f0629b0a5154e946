// Help texts: plain strings, so `--help` loads nothing else.

export const DEFAULT_CONFIG_PATH = "/etc/ptyreaper/config.yaml";

export const RUN_USAGE = "usage: ptyreaper run [--config FILE] [--listen HOST:PORT] [--dry-run] [--once] [--log-format text|json]";
export const SESSIONS_USAGE = "usage: ptyreaper sessions [--json] [--config FILE]";
export const CHECK_CONFIG_USAGE = "usage: ptyreaper check-config FILE";
export const INSTALL_USAGE = "usage: ptyreaper install [--root DIR] [--prefix DIR] [--dry-run]";
export const HASH_PASSWORD_USAGE = "usage: ptyreaper hash-password [--cost N] < PASSWORD";
export const UNINSTALL_USAGE = "usage: ptyreaper uninstall [--root DIR] [--prefix DIR] [--purge] [--dry-run]";

const CONFIG_NOTE = `  --config FILE           the config; without it ${DEFAULT_CONFIG_PATH} when that file exists
                          (what install writes), else the built-in defaults`;

const ENVIRONMENT = `environment (overrides the config file; a flag overrides both):
  PTYREAPER_LISTEN         listen           HOST:PORT
  PTYREAPER_POLL_INTERVAL  pollInterval     a duration, e.g. 10s
  PTYREAPER_LOG_LEVEL      log.level        trace|debug|info|warn|error|fatal
  PTYREAPER_MODE           reaper.mode      enforce|dry-run
  PTYREAPER_PROC_ROOT      procRoot         e.g. /host/proc
  DOCKER_HOST              docker.socket    unix:///path/to/docker.sock`;

const EXIT_CODES = `exit codes:
  0   success
  1   failure (a bug, or an install step that failed)
  64  usage error (unknown command or flag, bad argument)
  78  config error, or the listen address is unusable (systemd does not restart on 78)`;

export const HELP = `ptyreaper — keeps container hosts from running out of pseudo-terminals

usage: ptyreaper <command> [options]

commands:
  run [--config FILE] [--listen HOST:PORT] [--dry-run] [--once] [--log-format text|json]
                          the daemon: scan, decide, reap (it enforces by default; --dry-run
                          only logs and counts), serve /metrics
  sessions [--json] [--config FILE]
                          every pty and the exec session holding it, like w(1)
  check-config FILE       validate a config file (exit 78 when invalid)
  install [--root DIR] [--prefix DIR] [--dry-run]
                          install the program, the systemd unit and the default config
  uninstall [--root DIR] [--prefix DIR] [--purge] [--dry-run]
                          remove what install put in place
  hash-password [--cost N]
                          a bcrypt hash of the password on standard input, for the web
                          config's basic_auth_users

options:
  -h, --help              this help; \`ptyreaper COMMAND --help\` for one command
  -V, -v, --version       the version and the git revision it was built from

${ENVIRONMENT}

${EXIT_CODES}
`;

export const COMMAND_HELP: Readonly<Record<string, string>> = {
  run: `${RUN_USAGE}

The daemon: every pollInterval it reads the kernel's pty count and /proc, asks Docker which exec
session holds each pty, and reaps the stale ones. It enforces by default (signals stale sessions);
--dry-run (or reaper.mode: dry-run, PTYREAPER_MODE=dry-run) only logs and counts.

${CONFIG_NOTE}
  --listen HOST:PORT      where /metrics, /healthz, /readyz and /sessions are served
  --dry-run               signal nothing; log and count what would be reaped
  --once                  one cycle, then print its sessions report as JSON and exit; decision
                          only: nothing is signalled, even in enforce mode (the report shows
                          what the daemon would reap)
  --log-format text|json  text (readable) on a terminal, JSON lines otherwise by default

SIGHUP reloads the config; SIGTERM and SIGINT stop the daemon.

${ENVIRONMENT}

${EXIT_CODES}
`,
  sessions: `${SESSIONS_USAGE}

Every allocated pty, the process holding it and, for containers, the container and exec session.

  --json                  the report as JSON (the shape of GET /sessions, without policy states)
${CONFIG_NOTE}

As root on the host, the kernel names the pty fds first (a BPF iterator) and only those are read;
PTYREAPER_BPF_FINDER=0 reads every fd link instead (the same report, slower on a busy host).

${EXIT_CODES}
`,
  "check-config": `${CHECK_CONFIG_USAGE}

Validates FILE as the daemon would (environment overrides included) and prints the result: one line
per problem and exit 78 when invalid, the normalised settings and exit 0 when valid.

${EXIT_CODES}
`,
  install: `${INSTALL_USAGE}

Installs the program under PREFIX (default /usr/local), the systemd unit and, when absent, the
default config ${DEFAULT_CONFIG_PATH}.

  --root DIR              write everything under DIR instead of / (no root needed)
  --prefix DIR            an absolute directory for lib/ptyreaper and bin/ptyreaper
  --dry-run               print what would be done; write nothing

${EXIT_CODES}
`,
  "hash-password": `${HASH_PASSWORD_USAGE}

Prints a bcrypt hash for basic_auth_users in the web config (webConfigFile). The password is read
from standard input, never from the command line (which every user can read in /proc): typed at a
terminal without echo, or piped (one line; its newline is dropped).

  --cost N                bcrypt's cost, 4 to 31 (default 10); each step doubles the time to check

${EXIT_CODES}
`,
  uninstall: `${UNINSTALL_USAGE}

Removes what install put in place; keeps an edited config unless --purge.

  --root DIR              the root install wrote into
  --prefix DIR            the prefix install used
  --purge                 also remove ${DEFAULT_CONFIG_PATH}
  --dry-run               print what would be removed; remove nothing

${EXIT_CODES}
`,
};
