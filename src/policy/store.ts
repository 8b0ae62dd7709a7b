/**
 * Holds the policy snapshot in force. A swap replaces one reference, so a decision reads either
 * the old snapshot or the new one, never a mix (docs/design.md §1). The reloader re-checks the
 * live tunnels right after `swap`, in the same synchronous step (src/gateway/reload.ts), so every
 * tunnel is re-decided against exactly the snapshot that replaced the one it was allowed under.
 */

/** What the store needs to know of a snapshot. */
export interface VersionedSnapshot {
  readonly version: number;
  readonly hash: string;
}

export class PolicyStore<S extends VersionedSnapshot> {
  private snapshot: S | undefined;
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

  /** Makes `next` the snapshot in force. Returns the previous one. */
  swap(next: S): S | undefined {
    const previous = this.snapshot;
    this.snapshot = next;
    if (next.version >= this.nextVersion) this.nextVersion = next.version + 1;
    return previous;
  }
}
