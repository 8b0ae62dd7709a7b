/**
 * Timers for waits that may be longer than Node's timers allow. Node keeps a timer's duration in
 * a signed 32-bit integer: `setTimeout` with a longer delay fires after 1 ms (with a warning) and
 * `socket.setTimeout` cuts it to the maximum (https://nodejs.org/api/timers.html, "setTimeout").
 */

/** The longest delay a Node timer honours: 2^31-1 ms, about 24.8 days. */
export const TIMER_MAX_MS = 2 ** 31 - 1;

/** A pending {@link timerAt}. */
export interface LongTimer {
  /** Cancels it; idempotent, and harmless after it fired. */
  clear(): void;
}

/**
 * Calls `fn` once, when the wall clock reaches `atMs` (at once when it already has), however far
 * away that is: a wait beyond TIMER_MAX_MS is made of several timers. Unref'd: a pending timer
 * never keeps the process alive.
 */
export function timerAt(atMs: number, fn: () => void): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => {
      // A timer may fire a little early by the wall clock, and a long wait is several timers.
      if (Date.now() < atMs) {
        arm();
        return;
      }
      timer = undefined;
      fn();
    }, Math.min(Math.max(atMs - Date.now(), 0), TIMER_MAX_MS));
    timer.unref();
  };
  arm();
  return {
    clear() {
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
