/**
 * Holds the policy snapshot in force. A swap replaces one reference, so a decision reads either
 * the old snapshot or the new one, never a mix (docs/design.md §1).
 * Listeners run synchronously after the swap, in registration order; the gateway registers the
 * live-tunnel re-check there, so every tunnel is re-decided against exactly the snapshot that
 * replaced the one it was allowed under.
 */

/** What the store needs to know of a snapshot. */
export interface VersionedSnapshot {
  readonly version: number;
  readonly hash: string;
}

export type SwapListener<S> = (next: S, previous: S | undefined) => void;

export class PolicyStore<S extends VersionedSnapshot> {
  private snapshot: S | undefined;
  private readonly listeners: SwapListener<S>[] = [];
  private nextVersion = 1;

  constructor(initial?: S) {
    if (initial) this.swap(initial);
  }

  /** The snapshot in force, undefined until the first successful load. */
  current(): S | undefined {
    return this.snapshot;
  }

  /** Version the next load should carry (monotonic, never reused even after a rejected load). */
  allocateVersion(): number {
    return this.nextVersion++;
  }

  /** Makes `next` the snapshot in force, then notifies listeners. Returns the previous one. */
  swap(next: S): S | undefined {
    const previous = this.snapshot;
    this.snapshot = next;
    if (next.version >= this.nextVersion) this.nextVersion = next.version + 1;
    for (const l of this.listeners) l(next, previous);
    return previous;
  }

  /** Registers a listener; returns a function that removes it. */
  onSwap(listener: SwapListener<S>): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }
}
