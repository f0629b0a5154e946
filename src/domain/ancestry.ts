// One walk up a process tree, for every caller that follows parents (attribution, inventory, the reaper).

/** Process trees deeper than this are not plausible: a walk stops here, so a parent loop read mid-change cannot spin. */
export const MAX_ANCESTRY_DEPTH = 64;

/**
 * `start`, its parent, its parent's parent, …, as `parentOf` names them: up to (not including) the host's
 * init (pid 1) or a process whose parent is unknown, and at most MAX_ANCESTRY_DEPTH of them.
 */
export function* ancestry<T extends { pid: number }>(start: T | undefined, parentOf: (node: T) => T | undefined): Generator<T> {
  let node = start;
  for (let depth = 0; node !== undefined && node.pid > 1 && depth < MAX_ANCESTRY_DEPTH; depth++) {
    yield node;
    const parent = parentOf(node);
    if (parent?.pid === node.pid) return;
    node = parent;
  }
}
