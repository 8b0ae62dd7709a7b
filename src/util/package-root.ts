/**
 * The root of the installed waygate package: the directory of the `waygate` package.json, found by
 * walking up from a module of it. Holds for the sources (src/...) and for the compiled output
 * (dist/src/...) alike, so nothing depends on how deep a module sits.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root and its package.json, or null outside a waygate package. */
export function findPackage(from: string = dirname(fileURLToPath(import.meta.url))): { root: string; version: string } | null {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'waygate' && typeof pkg.version === 'string') return { root: dir, version: pkg.version };
    } catch {
      // no package.json here: keep walking up
    }
    if (dirname(dir) === dir) return null;
  }
}
