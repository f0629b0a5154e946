// One walk up a process tree, for every caller that follows parents (attribution, inventory, the reaper).

/** Process trees deeper than this are not plausible: a walk stops here, so a parent loop read mid-change cannot spin. */
export const MAX_ANCESTRY_DEPTH = 64;

/**
 * The first of `start`, its parent, its parent's parent, … (as `parentOf` names them) that `test` accepts:
 * up to (not including) the host's init (pid 1) or a process whose parent is unknown, and at most
 * MAX_ANCESTRY_DEPTH of them; undefined when none is. A test that never accepts visits the whole walk.
 *
 * A loop with a test rather than a generator: the daemon runs without V8's optimizing compiler, where every
 * generator step allocates, and attribution walks up from every pty holder.
 */
export function findAncestor<T>(
  start: T | undefined,
  pidOf: (node: T) => number,
  parentOf: (node: T) => T | undefined,
  test: (node: T) => boolean,
): T | undefined {
  let node = start;
  for (let depth = 0; node !== undefined && pidOf(node) > 1 && depth < MAX_ANCESTRY_DEPTH; depth++) {
    if (test(node)) return node;
    const parent = parentOf(node);
    if (parent !== undefined && pidOf(parent) === pidOf(node)) return undefined;
    node = parent;
  }
  return undefined;
}
