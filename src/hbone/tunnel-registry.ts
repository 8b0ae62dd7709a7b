/**
 * Every live tunnel of one HBONE server, pending or open. A tunnel is registered **before** its
 * first authorization (docs/design.md §3, ztunnel's connection_manager): a policy swap is followed by a
 * re-check of every registered tunnel, so a CONNECT whose dial is still in flight when the swap
 * lands is re-decided too and can never slip through under the old policy.
 */
import type { DecisionContext } from '../policy/context.ts';
import type { Decision } from '../policy/decision.ts';
import type { Tunnel, TunnelInfo } from './tunnel.ts';

/** The signature of the server's `authorize` option. */
export type Authorize = (ctx: DecisionContext) => Decision;

export class TunnelRegistry {
  readonly #tunnels = new Map<string, Tunnel>();
  #emptyWaiters: (() => void)[] = [];

  /** Number of live tunnels (pending and open). */
  get size(): number {
    return this.#tunnels.size;
  }

  register(tunnel: Tunnel): void {
    this.#tunnels.set(tunnel.id, tunnel);
  }

  remove(tunnel: Tunnel): void {
    if (!this.#tunnels.delete(tunnel.id)) return;
    if (this.#tunnels.size === 0 && this.#emptyWaiters.length > 0) {
      const waiters = this.#emptyWaiters;
      this.#emptyWaiters = [];
      for (const w of waiters) w();
    }
  }

  get(id: string): Tunnel | undefined {
    return this.#tunnels.get(id);
  }

  /** A snapshot of every live tunnel, for `/debug/connections`. */
  list(now: number = performance.now()): TunnelInfo[] {
    const out: TunnelInfo[] = [];
    for (const t of this.#tunnels.values()) out.push(t.info(now));
    return out;
  }

  values(): IterableIterator<Tunnel> {
    return this.#tunnels.values();
  }

  /**
   * Re-decides every live tunnel with its original context. Tunnels now denied are revoked with
   * `policy_changed` (open ones get RST_STREAM(CANCEL)). An `authorize` that throws fails closed,
   * as an evaluation error in an ALLOW rule counts as no match. Returns how many were revoked.
   */
  recheck(authorize: Authorize): number {
    let closed = 0;
    // Copy first: revoking can remove entries synchronously.
    for (const tunnel of [...this.#tunnels.values()]) {
      if (tunnel.state === 'closed' || !tunnel.authorized) continue;
      let decision: Decision | null;
      try {
        decision = authorize(tunnel.context);
      } catch {
        decision = null;
      }
      if (decision && decision.decision === 'allow') continue;
      const revocation = decision ? { reason: 'policy_changed' as const, decision } : { reason: 'policy_changed' as const };
      tunnel.revoke(revocation);
      closed++;
    }
    return closed;
  }

  /** Revokes every live tunnel with `reason`; returns how many. */
  revokeAll(reason: 'draining' | 'session_closed'): number {
    let n = 0;
    for (const tunnel of [...this.#tunnels.values()]) {
      if (tunnel.state === 'closed') continue;
      tunnel.revoke({ reason });
      n++;
    }
    return n;
  }

  /** Resolves when no tunnel is left. */
  whenEmpty(): Promise<void> {
    if (this.#tunnels.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.push(resolve));
  }
}
