/**
 * The version `waygate --version` and `waygate version` print: package.json's, read from the
 * package this file belongs to (src/util/package-root.ts: sources and compiled output alike).
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPackage } from '../util/package-root.ts';

export function packageVersion(from: string = dirname(fileURLToPath(import.meta.url))): string {
  return findPackage(from)?.version ?? 'unknown';
}
