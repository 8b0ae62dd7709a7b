/**
 * The plain-TCP upstream connector (docs/design.md §2 "Upstream": `503` on an unreachable destination or
 * a connect timeout, 10 s by default, as ztunnel). The socket is created with `allowHalfOpen` so a
 * FIN from the destination only ends one direction (the client's END_STREAM and the destination's
 * EOF are independent, RFC 9113 §8.5), and with `noDelay` because a tunnel carries interactive
 * protocols whose small writes must not wait for Nagle.
 *
 * A {@link TcpUpstream} is the pending dial and, once connected, the connection: one object per
 * tunnel, whose listeners are shared functions that find it through a symbol on its socket (the
 * way tunnel.ts keeps an idle tunnel free of per-tunnel closures).
 */
import { connect, type Socket } from 'node:net';
import {
  UpstreamDialError,
  type DialFailureKind,
  type PendingDial,
  type UpstreamConnection,
  type UpstreamConnector,
  type UpstreamInfo,
  type UpstreamRequest,
  type UpstreamTarget,
} from './connector.ts';

/** The failure kind of a TCP connect error (also used for the TCP part of an HBONE handshake, hbone.ts). */
export function classify(err: NodeJS.ErrnoException): DialFailureKind {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return 'unreachable';
    default:
      return 'other';
  }
}

/** One tunnel's TCP dial: an address and, for PROXY v2, the bytes to send before the tunnel's. */
export class TcpTarget implements UpstreamTarget {
  constructor(
    readonly ip: string,
    readonly port: number,
    /** Written to the destination by `start()`, before any client byte; not counted as tunnel bytes. */
    readonly preamble: Buffer | null = null,
  ) {}

  connect(timeoutMs: number): TcpUpstream {
    return new TcpUpstream(this, timeoutMs);
  }
}

/** Dials every tunnel's destination over plain TCP. */
export const tcpConnector: UpstreamConnector = {
  prepare: (request: UpstreamRequest): UpstreamTarget => new TcpTarget(request.ip, request.port),
};

const kDial = Symbol('waygate.tcpDial');
const TCP_INFO: UpstreamInfo = Object.freeze({ protocol: 'tcp', principal: '', reused: false });
type Carrier = Socket & { [kDial]?: TcpUpstream };

/**
 * A TCP dial and its connection. Exactly one of connect / error / timeout / abort settles the
 * promise; the timer is cleared on every path and the socket destroyed on every failure (the
 * dial owns it until the promise resolves, the tunnel afterwards).
 */
export class TcpUpstream implements PendingDial, UpstreamConnection {
  readonly promise: Promise<UpstreamConnection>;
  readonly stream: Socket;
  readonly info = TCP_INFO;
  readonly #target: TcpTarget;
  /** The dial's timer and promise settlers, dropped once settled (an open tunnel keeps this object). */
  #timer: NodeJS.Timeout | null;
  #resolve: ((c: UpstreamConnection) => void) | null = null;
  #reject: ((e: UpstreamDialError) => void) | null = null;

  constructor(target: TcpTarget, timeoutMs: number) {
    this.#target = target;
    this.promise = new Promise<UpstreamConnection>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const socket: Carrier = connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true });
    this.stream = socket;
    socket[kDial] = this;
    socket.on('connect', TcpUpstream.#onConnect);
    socket.on('error', TcpUpstream.#onError);
    this.#timer = setTimeout(TcpUpstream.#onTimeout, timeoutMs, this, timeoutMs);
    this.#timer.unref();
  }

  abort(): void {
    const t = this.#target;
    this.#settle(new UpstreamDialError('aborted', `connect to ${t.ip}:${t.port} abandoned`));
  }

  start(): void {
    const preamble = this.#target.preamble;
    if (preamble !== null) this.stream.write(preamble);
  }

  closeSoon(): void {
    this.stream.destroySoon();
  }

  reset(): void {
    const socket = this.stream;
    // libuv refuses a reset while a write shutdown is in flight (and Node then leaks the handle),
    // so only a socket whose write side is still open is reset; an ended one is just closed.
    if (socket.writableEnded) socket.destroy();
    else socket.resetAndDestroy();
  }

  destroy(): void {
    this.stream.destroy();
  }

  #settle(err: UpstreamDialError | null): void {
    const timer = this.#timer;
    if (timer === null) return; // settled already
    clearTimeout(timer);
    const resolve = this.#resolve!;
    const reject = this.#reject!;
    this.#timer = this.#resolve = this.#reject = null;
    const socket = this.stream as Carrier;
    socket[kDial] = undefined;
    socket.removeListener('connect', TcpUpstream.#onConnect);
    socket.removeListener('error', TcpUpstream.#onError);
    if (err) {
      socket.destroy();
      reject(err);
    } else {
      resolve(this);
    }
  }

  static #onConnect(this: Carrier): void {
    const dial = this[kDial];
    if (dial) dial.#settle(null);
  }

  static #onError(this: Carrier, err: NodeJS.ErrnoException): void {
    const dial = this[kDial];
    if (!dial) return;
    const t = dial.#target;
    dial.#settle(new UpstreamDialError(classify(err), `connect to ${t.ip}:${t.port} failed: ${err.code ?? err.message}`, err));
  }

  static #onTimeout(dial: TcpUpstream, timeoutMs: number): void {
    const t = dial.#target;
    dial.#settle(new UpstreamDialError('timeout', `connect to ${t.ip}:${t.port} timed out after ${timeoutMs} ms`));
  }
}
