/**
 * Calls one hook of an observer (metrics hooks: src/hbone/observer.ts, the HBONE upstream pool's
 * in src/upstream/hbone-pool.ts), swallowing what it throws: hooks run on the data path, and
 * metrics must never break a tunnel. Every hook is optional.
 */
type HookArgs<T> = T extends (...args: infer A) => unknown ? A : never;

export function notify<O extends object, K extends keyof O>(observer: O | undefined, hook: K, ...args: HookArgs<NonNullable<O[K]>>): void {
  const fn = observer?.[hook] as ((...a: unknown[]) => void) | undefined;
  if (!fn) return;
  try {
    fn.apply(observer, args);
  } catch {
    // metrics must never break the data path
  }
}
