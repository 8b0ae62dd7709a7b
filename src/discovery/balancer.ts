/**
 * Which endpoint of a service a tunnel goes to: power of two choices over active tunnels (Envoy's
 * LEAST_REQUEST load balancer with its default choice_count 2; ztunnel itself picks an endpoint at
 * random). Two distinct endpoints are drawn at random; the one with fewer active tunnels through
 * this gateway wins, a tie goes to the first drawn.
 *
 * Why: a tunnel is a long-lived L4 flow, and its cost to an endpoint lasts as long as it does.
 * Round robin and pure random spread *arrivals* evenly, not what is *held*: long tunnels pile up
 * where short ones happened to leave, and random choice alone drifts by about the square root of
 * the number of tunnels (±15 of 1,000 over 3 endpoints, one standard deviation). Comparing two
 * random candidates on their in-flight counts keeps the imbalance of held tunnels to a few,
 * however many there are (the "power of two choices" result), at O(1) per pick, with no coordination across workers and no herd onto one "least
 * loaded" endpoint, which a full least-connections scan would cause when many gateways share a
 * stale view. Counts are this process's own; each worker balances what it holds.
 *
 * Counts are keyed by `namespace/name`, so they survive discovery snapshot swaps (a new snapshot
 * has new workload objects for the same pods), and an entry is deleted when it returns to zero, so
 * memory follows the endpoints with live tunnels, not every endpoint ever seen.
 */
import type { MeshWorkload } from './model.ts';

export interface BalancerOptions {
  /** Uniform in [0, 1), as `Math.random`; tests pass a seeded one (src/util/seeded-random.ts). */
  random?: () => number;
}

function keyOf(w: MeshWorkload): string {
  return `${w.namespace}/${w.name}`;
}

export class EndpointBalancer {
  readonly #random: () => number;
  readonly #active = new Map<string, number>();

  constructor(opts: BalancerOptions = {}) {
    this.#random = opts.random ?? Math.random;
  }

  /** One of `endpoints` (non-empty; the caller answers 503 for a service without one). */
  pick(endpoints: readonly MeshWorkload[]): MeshWorkload {
    const n = endpoints.length;
    if (n === 0) throw new RangeError('EndpointBalancer.pick: no endpoints to pick from');
    if (n === 1) return endpoints[0]!;
    const i = this.#index(n);
    let j = this.#index(n - 1);
    if (j >= i) j++; // two distinct candidates
    const first = endpoints[i]!;
    const second = endpoints[j]!;
    return this.active(second) < this.active(first) ? second : first;
  }

  /** Counts a tunnel to `w` until the returned release is called (more calls do nothing). */
  acquire(w: MeshWorkload): () => void {
    const key = keyOf(w);
    this.#active.set(key, (this.#active.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#active.get(key) ?? 1) - 1;
      if (left > 0) this.#active.set(key, left);
      else this.#active.delete(key);
    };
  }

  /** Tunnels to `w` acquired and not yet released. */
  active(w: MeshWorkload): number {
    return this.#active.get(keyOf(w)) ?? 0;
  }

  /** How many endpoints have a live tunnel (the entries held: zero once every tunnel is released). */
  get tracked(): number {
    return this.#active.size;
  }

  #index(n: number): number {
    // Clamped: a random source returning 1 (outside its contract) must not index past the end.
    return Math.min(n - 1, Math.floor(this.#random() * n));
  }
}
