/**
 * Admission of upstream dials on one HBONE connection (`limits.maxPendingDialsPerConnection`).
 *
 * At most `maxInFlight` dials run at once per connection: each is a socket (or a stream of the
 * upstream connector's, src/upstream/connector.ts), and a peer must not make the gateway open hundreds of
 * connects at once towards destinations. A CONNECT beyond that
 * is not refused: the connection advertised SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2), and
 * a burst within it is legitimate (a ztunnel opening its pool's tunnels). It waits for a slot, in
 * arrival order, and is dialed when one frees.
 *
 * Bounds of what waits:
 * - count: dialing plus waiting never exceeds `maxHeld`, the advertised stream limit. nghttp2
 *   refuses streams beyond that limit itself (REFUSED_STREAM), so {@link DialAdmission.admit}
 *   returning null is a backstop for a stream the peer reset that JS has not yet seen close;
 * - time: a CONNECT's connect budget is `connectTimeoutMs` from its arrival, spent waiting and
 *   dialing together. A waiter that gets a slot dials with what is left of it; one with nothing
 *   left fails with {@link DialSlotTimeoutError}, without a dial. No timer per waiter is needed:
 *   admissions come in arrival order and every CONNECT has the same budget, so each dial ahead of
 *   a waiter arrived earlier and ends (connected, failed, or timed out) before the waiter's own
 *   deadline; the waiter is handed a slot no later than that and answered then;
 * - memory: a waiting stream is not read (tunnel.ts reads a stream only from `open()`), so its
 *   early DATA is bounded by its stream window like that of any CONNECT not answered yet
 *   (h2-settings.ts).
 *
 * A waiter leaves the queue when it is aborted (the client reset the stream, or a policy recheck,
 * drain or shutdown revoked it: tunnel.ts calls `abort()` of the dial it holds) and frees no slot,
 * since it holds none. A slot is released when its dial settles, and handed to the first waiter.
 */
import { UpstreamDialError, type PendingDial, type UpstreamConnection, type UpstreamTarget } from '../upstream/connector.ts';

/** A waiting CONNECT whose connect budget ran out before a dial slot freed; no dial was made. */
export class DialSlotTimeoutError extends UpstreamDialError {
  constructor(message: string) {
    super('timeout', message);
    this.name = 'DialSlotTimeoutError';
  }
}

/** A dial admitted on a connection: dialing now, or waiting for a slot first. */
export interface AdmittedDial extends PendingDial {
  /** Whether it had to wait for a slot (no slot was free when it was admitted). */
  readonly queued: boolean;
  /** `performance.now()` when the connect started; null while waiting, or if it never started. */
  readonly dialStartedAt: number | null;
}

export interface DialAdmissionOptions {
  /** Dials in flight at once (the slots). */
  maxInFlight: number;
  /** Dials in flight plus waiters, at most (the advertised stream limit). */
  maxHeld: number;
  /** The connect budget of every CONNECT, measured from its arrival. */
  connectTimeoutMs: number;
}

type Admitted = { -readonly [K in keyof AdmittedDial]: AdmittedDial[K] };

/** Hands a free slot to a waiter; returns whether the waiter took it (false: it failed instead). */
type Grant = () => boolean;

export class DialAdmission {
  readonly #maxInFlight: number;
  readonly #maxHeld: number;
  readonly #connectTimeoutMs: number;
  #inFlight = 0;
  /** Waiters in arrival order (a Set: FIFO iteration, O(1) removal on abort). */
  readonly #waiting = new Set<Grant>();

  constructor(opts: DialAdmissionOptions) {
    this.#maxInFlight = opts.maxInFlight;
    this.#maxHeld = Math.max(opts.maxHeld, opts.maxInFlight);
    this.#connectTimeoutMs = opts.connectTimeoutMs;
  }

  /** Dials in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** CONNECTs waiting for a slot. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Dials `target` now if a slot is free and nobody waits, else once a slot frees. `arrivedAt`
   * (performance.now() of the CONNECT's arrival) starts its connect budget; calls must come in
   * nondecreasing `arrivedAt` order (see the module comment). `abandoned()` is asked when a slot
   * is handed over: true (the stream is already closed) skips the dial. Returns null, without
   * dialing, when `maxHeld` CONNECTs are already dialing or waiting.
   */
  admit(target: UpstreamTarget, arrivedAt: number, abandoned: () => boolean): AdmittedDial | null {
    if (this.#inFlight + this.#waiting.size >= this.#maxHeld) return null;
    const deadline = arrivedAt + this.#connectTimeoutMs;
    const { ip, port } = target;
    let resolve!: (c: UpstreamConnection) => void;
    let reject!: (e: UpstreamDialError) => void;
    const promise = new Promise<UpstreamConnection>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let settled = false;
    let inner: PendingDial | null = null;
    const fail = (err: UpstreamDialError): void => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    const dial: Admitted = {
      promise,
      queued: false,
      dialStartedAt: null,
      abort: () => {
        if (settled) return;
        // Dialing: the dial's own rejection (kind aborted) settles this one and frees the slot.
        if (inner) return inner.abort();
        this.#waiting.delete(grant);
        fail(new UpstreamDialError('aborted', `connect to ${ip}:${port} abandoned while waiting for a dial slot`));
      },
    };
    const grant: Grant = () => {
      if (abandoned()) {
        fail(new UpstreamDialError('aborted', `connect to ${ip}:${port} abandoned before its dial`));
        return false;
      }
      const now = performance.now();
      const remainingMs = deadline - now;
      if (remainingMs <= 0 && dial.queued) {
        fail(new DialSlotTimeoutError(
          `connect to ${ip}:${port} not attempted: no dial slot freed within its ${this.#connectTimeoutMs} ms connect timeout (${this.#maxInFlight} dials in flight on the connection)`,
        ));
        return false;
      }
      // What is left of the budget, at least 1 ms: a CONNECT that did not wait has nearly all of it.
      const budgetMs = Math.max(1, Math.ceil(remainingMs));
      this.#inFlight++;
      dial.dialStartedAt = now;
      const d = target.connect(budgetMs);
      inner = d;
      // Settle first, then release: the owner of this dial runs before any waiter the release
      // fails, so answers go out in arrival order.
      d.promise.then(
        (connection) => {
          settled = true;
          resolve(connection);
          this.#release();
        },
        (err: UpstreamDialError) => {
          settled = true;
          reject(err);
          this.#release();
        },
      );
      return true;
    };
    if (this.#inFlight < this.#maxInFlight && this.#waiting.size === 0) {
      grant();
    } else {
      dial.queued = true;
      this.#waiting.add(grant);
    }
    return dial;
  }

  /** A dial settled: its slot goes to the first waiter that takes it. */
  #release(): void {
    this.#inFlight--;
    for (const grant of this.#waiting) {
      if (this.#inFlight >= this.#maxInFlight) return;
      this.#waiting.delete(grant);
      grant();
    }
  }
}
