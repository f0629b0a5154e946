// What a command may touch of the outside world; main.ts passes the real ones, tests capture.

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** The installed config (/etc/ptyreaper/config.yaml) when it exists: used when no --config is given. */
  defaultConfigPath?: string | null;
}

/** A command returns its exit code; only main.ts calls process.exit. */
export type Command = (args: string[], io: CliIo) => Promise<number>;
