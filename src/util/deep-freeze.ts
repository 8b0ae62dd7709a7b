/**
 * Recursive freezing of values that are shared after they are built (a parsed config, parsed
 * policy documents, a compiled policy snapshot): whoever holds one cannot alter it for the others.
 */

/**
 * Freezes plain objects and arrays recursively and returns `value`. Maps and Sets cannot be made
 * read-only (freezing does not stop `set`/`add`), so what they hold is frozen and they are frozen
 * only as a mark. An object for which `opaque` answers true is left as it is, and not descended
 * into (an object its owner manages, such as a compiled CEL expression, src/policy/snapshot.ts).
 *
 * Each object is frozen before its children are visited, so "already frozen" doubles as "already
 * visited": shared objects are walked once and a cycle ends, without a visited set (which cost a
 * third of the walk of a 10,000-rule snapshot).
 */
export function deepFreeze<T>(value: T, opaque?: (value: object) => boolean): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  if (value instanceof Map || value instanceof Set) {
    Object.freeze(value);
    for (const v of value.values()) deepFreeze(v, opaque);
    return value;
  }
  if (opaque !== undefined && opaque(value)) return value;
  Object.freeze(value);
  for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v, opaque);
  return value;
}
