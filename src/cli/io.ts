// What a command may touch of the outside world; main.ts passes the real ones, tests capture.

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** The installed config (/etc/ptyreaper/config.yaml) when it exists: used when no --config is given. */
  defaultConfigPath?: string | null;
  /** Standard input as one secret: on a terminal `prompt` goes to stderr and nothing is echoed; piped, all of it. */
  readSecret?: (prompt: string) => Promise<string>;
}

/** A command returns its exit code; only main.ts calls process.exit. */
export type Command = (args: string[], io: CliIo) => Promise<number>;
