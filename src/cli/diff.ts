/**
 * Unified diffs of two texts, for `waygate policy fmt --diff`: GNU `diff -u`'s shape (`---`/`+++`
 * headers naming the file, `@@ -l,s +l,s @@` hunks with three lines of context, `\ No newline at
 * end of file`), so `patch -p0` applies what fmt would write. The line diff is jsdiff's (the `diff`
 * package, Myers' O(ND) algorithm); this module only fixes the header shape.
 */
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from 'diff';

/** The unified diff from `before` to `after` of the file `name`; `''` when they are equal. */
export function unifiedDiff(before: string, after: string, name: string, context = 3): string {
  if (before === after) return '';
  // No header texts: `--- name` alone, as diff -u of one file against its formatted self.
  return createTwoFilesPatch(name, name, before, after, undefined, undefined, { context, headerOptions: FILE_HEADERS_ONLY });
}
