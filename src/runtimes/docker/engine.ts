// The few Docker Engine calls ptyreaper needs; docker/dockerode.ts implements them, unit tests fake them.

/** A running container as GET /containers/{id}/json tells it, reduced to what ptyreaper needs. */
export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** Host pid of the container's init process (State.Pid). */
  pid: number;
  tty: boolean;
  execIds: string[];
}

/** An exec as GET /exec/{id}/json tells it (moby's ExecInspect), reduced to what ptyreaper needs. */
export interface ExecInfo {
  id: string;
  containerId: string;
  running: boolean;
  /** Host pid of the exec'd process; 0 before it runs. */
  pid: number;
  tty: boolean;
  entrypoint: string;
  arguments: string[];
}

/** A container or exec event from GET /events, reduced to what keeps the cache current. */
export interface DockerEvent {
  /** "start", "die", "destroy", "exec_create", "exec_start", "exec_die", ... (the text after ":" is cut). */
  action: string;
  containerId: string;
  /** Set on exec events when the engine names the exec. */
  execId: string | null;
}

export interface EventStream {
  close(): void;
}

export interface EventHandlers {
  onEvent(event: DockerEvent): void;
  /** The stream ended or failed; the caller reconnects. */
  onClose(err: Error | null): void;
}

export interface DockerEngine {
  ping(): Promise<void>;
  listRunningContainerIds(): Promise<string[]>;
  /** null when the container is gone or not running. */
  inspectContainer(id: string): Promise<ContainerInfo | null>;
  /** null when the exec is gone. */
  inspectExec(id: string): Promise<ExecInfo | null>;
  /** Resolves once the engine accepted the subscription. */
  subscribeEvents(handlers: EventHandlers): Promise<EventStream>;
  /** Where it connects, for messages. */
  readonly endpoint: string;
}
