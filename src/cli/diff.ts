/**
 * Unified diffs of two texts, for `waygate policy fmt --diff` (the format of GNU diff -u and of
 * POSIX `diff -u`: `---`/`+++` headers, `@@ -l,s +l,s @@` hunks with three lines of context,
 * `\ No newline at end of file`), so `patch -p0` applies what fmt would write. No installed
 * dependency computes line diffs (Node 20 has no util.diff), hence this small Myers diff
 * (E. W. Myers, "An O(ND) Difference Algorithm and Its Variations", 1986): time O((N+M)·D), memory
 * O(D²) for the trace, D the number of changed lines, which fmt keeps small.
 */

type Op = { kind: ' ' | '-' | '+'; line: string };

/** Lines with their terminator, so a last line without a newline differs from one with it. */
function lines(text: string): string[] {
  const out = text.split(/(?<=\n)/);
  return out.length === 1 && out[0] === '' ? [] : out;
}

/** The shortest edit script from `a` to `b` (Myers' greedy forward search, then backtracking). */
function editScript(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  // v[k + max] = the furthest x reached on diagonal k; trace[d] = v's band [-d, d] before step d.
  const v = new Int32Array(2 * max + 2);
  const trace: Int32Array[] = [];
  let found = max === 0;
  for (let d = 0; d <= max && !found; d++) {
    trace.push(v.slice(max - d, max + d + 1));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[max + k - 1]! < v[max + k + 1]!) ? v[max + k + 1]! : v[max + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[max + k] = x;
      if (x >= n && y >= m) {
        found = true;
        break;
      }
    }
  }
  const ops: Op[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const band = trace[d]!; // index k + d
    const at = (k: number) => band[k + d]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push({ kind: ' ', line: a[--x]! });
      y--;
    }
    if (d > 0) {
      if (x === prevX) ops.push({ kind: '+', line: b[--y]! });
      else ops.push({ kind: '-', line: a[--x]! });
    }
  }
  return ops.reverse();
}

/**
 * The unified diff turning `before` into `after`, or "" when they are equal. `name` labels both
 * sides (fmt rewrites a file in place).
 */
export function unifiedDiff(before: string, after: string, name: string, context = 3): string {
  if (before === after) return '';
  const ops = editScript(lines(before), lines(after));
  const changed: number[] = [];
  ops.forEach((op, i) => {
    if (op.kind !== ' ') changed.push(i);
  });
  let out = `--- ${name}\n+++ ${name}\n`;
  let i = 0;
  while (i < changed.length) {
    // One hunk: a change with `context` lines each side, merged with the next while they touch.
    const start = Math.max(0, changed[i]! - context);
    let end = Math.min(ops.length, changed[i]! + context + 1);
    let j = i + 1;
    while (j < changed.length && changed[j]! - context <= end) end = Math.min(ops.length, changed[j++]! + context + 1);
    i = j;
    const before = ops.slice(0, start);
    const hunk = ops.slice(start, end);
    const oldStart = before.filter((o) => o.kind !== '+').length;
    const newStart = before.filter((o) => o.kind !== '-').length;
    const oldLen = hunk.filter((o) => o.kind !== '+').length;
    const newLen = hunk.filter((o) => o.kind !== '-').length;
    // An empty side is numbered by the line before it (GNU diff's convention).
    out += `@@ -${oldLen === 0 ? oldStart : oldStart + 1},${oldLen} +${newLen === 0 ? newStart : newStart + 1},${newLen} @@\n`;
    for (const op of hunk) {
      out += op.kind + op.line;
      if (!op.line.endsWith('\n')) out += '\n\\ No newline at end of file\n';
    }
  }
  return out;
}
