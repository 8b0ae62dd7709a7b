/** "Did you mean" hints: the one edit distance and closest-name search of every diagnostic. */

/**
 * Edit distance counting a transposition as one edit (optimal string alignment): `lsiten` is one
 * edit from `listen`, as a person mistyping it would count.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** A typo's reach for a name: one edit per three characters, at least one. */
export function typoReach(name: string): number {
  return Math.max(1, Math.floor(name.length / 3));
}

/**
 * The candidate closest to `name` (case-insensitive; the first of equally close ones) if it is at
 * most `maxDistance` edits away, else undefined.
 */
export function suggest(name: string, candidates: readonly string[], maxDistance: number = typoReach(name)): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const lower = name.toLowerCase();
  for (const c of candidates) {
    const cl = c.toLowerCase();
    const d = cl === lower ? 0 : editDistance(lower, cl);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= maxDistance ? best : undefined;
}

/** ` (did you mean "x"?)` for the closest value within a typo's reach, or ''. */
export function didYouMean(value: string, candidates: readonly string[]): string {
  const s = suggest(value, candidates);
  return s !== undefined ? ` (did you mean "${s}"?)` : '';
}
