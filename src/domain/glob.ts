// Container name patterns of policy.exemptContainers: "*" any run of characters, "?" exactly one.

/**
 * True when `name` matches the whole of `pattern`. No regular expressions: a pattern like
 * "*a*a*a*b" would backtrack exponentially there; this greedy matcher with one resume point
 * is O(pattern × name). Characters are code points, so "?" matches one emoji, not half of one.
 */
export function globMatch(pattern: string, name: string): boolean {
  const p = Array.from(pattern);
  const s = Array.from(name);
  let pi = 0;
  let si = 0;
  let starPi = -1;
  let starSi = 0;
  while (si < s.length) {
    const pc = p[pi];
    if (pc === "*") {
      starPi = pi++;
      starSi = si;
    } else if (pc !== undefined && (pc === "?" || pc === s[si])) {
      pi++;
      si++;
    } else if (starPi >= 0) {
      // Let the last star swallow one more character and retry from there.
      pi = starPi + 1;
      si = ++starSi;
    } else {
      return false;
    }
  }
  while (p[pi] === "*") pi++;
  return pi === p.length;
}
