// DockerCache: a quiet steady cycle makes no API call; events mark exactly what changed. DockerRuntime: the reaper asks the engine afresh.
import { describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { DockerCache } from "../../../../src/runtimes/docker/cache.js";
import { DockerRuntime } from "../../../../src/runtimes/docker/docker.js";
import type { RuntimePort } from "../../../../src/runtimes/port.js";
import { gatherRuntime } from "../../../../src/runtimes/view.js";
import { parseEvent } from "../../../../src/runtimes/docker/dockerode.js";
import type { ContainerInfo, DockerEngine, EventHandlers, ExecInfo } from "../../../../src/runtimes/docker/engine.js";

class FakeEngine implements DockerEngine {
  readonly endpoint = "fake";
  containers = new Map<string, ContainerInfo>();
  execs = new Map<string, ExecInfo>();
  calls = 0;
  up = true;
  handlers: EventHandlers | null = null;

  private check(): void {
    this.calls++;
    if (!this.up) throw new Error("connect ENOENT /var/run/docker.sock");
  }
  ping(): Promise<void> {
    this.check();
    return Promise.resolve();
  }
  listRunningContainerIds(): Promise<string[]> {
    this.check();
    return Promise.resolve([...this.containers.keys()]);
  }
  inspectContainer(id: string): Promise<ContainerInfo | null> {
    this.check();
    return Promise.resolve(this.containers.get(id) ?? null);
  }
  inspectExec(id: string): Promise<ExecInfo | null> {
    this.check();
    return Promise.resolve(this.execs.get(id) ?? null);
  }
  subscribeEvents(handlers: EventHandlers) {
    if (!this.up) return Promise.reject(new Error("connect ENOENT"));
    this.handlers = handlers;
    return Promise.resolve({ close: () => (this.handlers = null) });
  }
  addExec(containerId: string, id: string, pid: number): void {
    this.execs.set(id, {
      id,
      containerId,
      running: true,
      pid,
      tty: true,
      entrypoint: "sh",
      arguments: [],
    });
    const c = this.containers.get(containerId);
    if (c) c.execIds = [...c.execIds, id];
  }
}

const C1 = "1".repeat(64);

function setup() {
  const engine = new FakeEngine();
  engine.containers.set(C1, { id: C1, name: "web", labels: {}, pid: 100, tty: false, execIds: [] });
  const cache = new DockerCache({ engine, logger: pino({ enabled: false }), minBackoffMs: 1, maxBackoffMs: 5 });
  return { engine, cache };
}

describe("DockerCache", () => {
  it("syncs fully once, then makes no API call while nothing happens", async () => {
    const { engine, cache } = setup();
    engine.addExec(C1, "x1", 200);
    await cache.start();
    const first = await cache.refresh();
    expect(first.available).toBe(true);
    expect(first.execs.map((e) => e.id)).toEqual(["x1"]);
    expect(first.apiCalls).toBe(3); // list, inspect container, inspect exec
    for (let i = 0; i < 5; i++) expect((await cache.refresh()).apiCalls).toBe(0);
    cache.stop();
  });

  it("an exec event costs one container and one exec inspection", async () => {
    const { engine, cache } = setup();
    await cache.start();
    await cache.refresh();
    engine.addExec(C1, "x2", 201);
    engine.handlers?.onEvent({ action: "exec_create", containerId: C1, execId: null });
    const after = await cache.refresh();
    expect(after.execs.map((e) => e.id)).toEqual(["x2"]);
    expect(after.apiCalls).toBe(2);
    (engine.execs.get("x2") as ExecInfo).running = false;
    engine.handlers?.onEvent({ action: "exec_die", containerId: C1, execId: "x2" });
    const died = await cache.refresh();
    expect(died.execs).toEqual([]);
    expect(died.apiCalls).toBe(1);
    cache.stop();
  });

  it("drops a destroyed container and its execs", async () => {
    const { engine, cache } = setup();
    engine.addExec(C1, "x1", 200);
    await cache.start();
    await cache.refresh();
    engine.containers.delete(C1);
    engine.handlers?.onEvent({ action: "destroy", containerId: C1, execId: null });
    const after = await cache.refresh();
    expect(after.containers).toEqual([]);
    expect(after.execs).toEqual([]);
    cache.stop();
  });

  it("reports unavailable with no data (never stale data) and recovers with a full resync", async () => {
    const { engine, cache } = setup();
    engine.addExec(C1, "x1", 200);
    await cache.start();
    await cache.refresh();
    engine.up = false;
    engine.handlers?.onClose(new Error("EOF"));
    const down = await cache.refresh();
    expect(down).toMatchObject({ available: false, containers: [], execs: [] });
    expect(down.error).toContain("ENOENT");
    engine.up = true;
    await vi.waitFor(() => expect(cache.eventsConnected).toBe(true)); // the backoff reconnect
    const back = await cache.refresh();
    expect(back.available).toBe(true);
    expect(back.execs.map((e) => e.id)).toEqual(["x1"]);
    expect(back.apiCalls).toBeGreaterThan(0);
    cache.stop();
  });
});

describe("parseEvent", () => {
  it.each([
    [
      '{"Type":"container","Action":"exec_start: sh -c ls","Actor":{"ID":"abc","Attributes":{"execID":"e9"}}}',
      { action: "exec_start", containerId: "abc", execId: "e9" },
    ],
    ['{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{}}}', { action: "die", containerId: "abc", execId: null }],
    ['{"Type":"network","Action":"connect","Actor":{"ID":"n"}}', null],
    ["{not json", null],
    ['{"Type":"container","Action":"start"}', null],
  ])("%s", (line, expected) => {
    expect(parseEvent(line)).toEqual(expected);
  });
});

describe("DockerRuntime (the RuntimePort the reaper asks)", () => {
  function runtime() {
    const engine = new FakeEngine();
    engine.containers.set(C1, {
      id: C1,
      name: "web",
      labels: { "io.kubernetes.pod.namespace": "team-a", "io.kubernetes.pod.name": "p", "io.kubernetes.container.name": "c" },
      pid: 100,
      tty: false,
      execIds: [],
    });
    return { engine, docker: new DockerRuntime(engine, { logger: pino({ enabled: false }) }) };
  }

  it("answers from the engine afresh, in the words every runtime answers in", async () => {
    const { engine, docker } = runtime();
    engine.addExec(C1, "e1", 200);
    engine.addExec(C1, "e2", 0);
    expect(await docker.getContainer({ namespace: null, id: C1 })).toEqual({
      runtime: "docker",
      namespace: null,
      id: C1,
      initPid: 100,
      labels: engine.containers.get(C1)?.labels,
      name: "web",
      kubernetes: { namespace: "team-a", pod: "p", podUid: null, container: "c" },
    });
    expect(await docker.listExecs({ namespace: null, id: C1 })).toEqual([
      { id: "e1", container: { namespace: null, id: C1 }, pid: 200, running: true, tty: true, command: ["sh"] },
      { id: "e2", container: { namespace: null, id: C1 }, pid: 0, running: true, tty: true, command: ["sh"] },
    ]);
    const calls = engine.calls;
    await docker.listExecs({ namespace: null, id: C1 });
    expect(engine.calls).toBe(calls + 3); // no cache between the reaper and the engine
    expect((await docker.listContainers()).map((c) => c.id)).toEqual([C1]);
  });

  it("is gathered like every runtime, from its cache: a steady cycle asks the engine nothing", async () => {
    const { engine, docker } = runtime();
    engine.addExec(C1, "e1", 200);
    await docker.start();
    const first = await gatherRuntime(docker);
    expect(first).toEqual({
      runtime: "docker",
      available: true,
      error: null,
      containers: [await docker.getContainer({ namespace: null, id: C1 })],
      execs: [{ id: "e1", container: { namespace: null, id: C1 }, pid: 200, running: true, tty: true, command: ["sh"] }],
      apiCalls: 3, // list, inspect container, inspect exec
    });
    const calls = engine.calls;
    for (let i = 0; i < 3; i++) expect(await gatherRuntime(docker)).toEqual({ ...first, apiCalls: 0 });
    expect(engine.calls).toBe(calls);
    engine.up = false;
    docker.close();
    expect(await gatherRuntime(docker)).toEqual({
      runtime: "docker",
      available: false,
      error: "connect ENOENT /var/run/docker.sock",
      containers: [],
      execs: [],
      apiCalls: 1,
    });
  });

  it("names no container that is gone, and no exec of one", async () => {
    const { docker } = runtime();
    expect(await docker.getContainer({ namespace: null, id: "f".repeat(64) })).toBeNull();
    expect(await docker.listExecs({ namespace: null, id: "f".repeat(64) })).toEqual([]);
  });

  it("has no kill call (the Engine API has none) and reports exits late", () => {
    const port: RuntimePort = runtime().docker;
    expect("killExec" in port).toBe(false);
    const { docker } = runtime();
    expect(docker.reportsExitLate).toBe(true);
  });
});
