/**
 * A bound on a wait for an event a test expects: the event's promise, or a rejection naming what
 * did not happen once `timeoutMs` passed. Not a timing assertion: the bound only turns a missing
 * event into a prompt failure with a message instead of the runner's 120 s timeout.
 */
export function within<T>(promise: Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
