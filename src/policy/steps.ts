/**
 * Long policy work, written once and run two ways. Loading a large set (parsing YAML, compiling
 * CEL, building the indexes) takes hundreds of milliseconds of CPU; done in one synchronous run on
 * the gateway's thread, it stalls every CONNECT for that long (bench/README.md, "Reload under
 * load"). So that work is a generator that `yield`s between small steps (a document, a rule, an
 * index bucket), and:
 *   - `runInSlices` runs it in slices of about SLICE_MS and gives the event loop back between
 *     them (the gateway's reloader: the data path keeps deciding with the old snapshot meanwhile);
 *   - `runToEnd` runs it at once (tests, `compileFromTexts`, tools with nothing else to serve).
 * The result is the same either way: a step never depends on when it runs.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Work that yields between steps and returns T. */
export type Steps<T> = Generator<void, T, undefined>;

/**
 * Longest run of steps between two event-loop turns. A step is at most a few milliseconds (one
 * document, one rule), so a slice stays well under the 50 ms the reload under load is held to;
 * a shorter slice would make a 10,000-rule load spend more of its time in loop turns.
 */
export const SLICE_MS = 10;

/** Runs `steps` to the end without yielding to the event loop. */
export function runToEnd<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * Runs `steps`, giving the event loop a turn (`setImmediate`: pending I/O is polled first) whenever
 * `sliceMs` have passed since the last one.
 */
export async function runInSlices<T>(steps: Steps<T>, sliceMs: number = SLICE_MS): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
}
