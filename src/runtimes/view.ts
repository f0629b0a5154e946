// One cycle's look at a runtime: its running containers and their exec sessions, through its port.
// What it returns, RuntimeView, is the domain's (domain/runtime.ts).
import { errorMessage } from "../errors.js";
import type { RuntimeExec, RuntimeView } from "../domain/runtime.js";
import type { RuntimePort } from "./port.js";

/**
 * The port's current view where it keeps one (Docker's), else lists the runtime's containers, then each one's execs. `skipNamespaces` leaves out containerd namespaces
 * another source already covers (Docker's `moby`), so no session is counted twice.
 */
export async function gatherRuntime(port: RuntimePort, skipNamespaces: ReadonlySet<string> = new Set()): Promise<RuntimeView> {
  if (port.currentView) return port.currentView();
  try {
    const containers = (await port.listContainers()).filter((c) => c.namespace === null || !skipNamespaces.has(c.namespace));
    const execs: RuntimeExec[] = [];
    for (const container of containers) execs.push(...(await port.listExecs(container)));
    return { runtime: port.runtime, available: true, error: null, containers, execs };
  } catch (err) {
    return { runtime: port.runtime, available: false, error: errorMessage(err), containers: [], execs: [] };
  }
}
