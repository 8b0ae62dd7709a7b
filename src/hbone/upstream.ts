/**
 * Dialing the destination of an allowed tunnel (DESIGN §2: `503` on unreachable upstream or a
 * connect timeout, 10 s by default, as ztunnel). The socket is created with `allowHalfOpen` so a
 * FIN from the destination only ends one direction (the client's END_STREAM and the destination's
 * EOF are independent, RFC 9113 §8.5), and with `noDelay` because a tunnel carries interactive
 * protocols whose small writes must not wait for Nagle.
 */
import { connect, type Socket } from 'node:net';
import { WaygateError } from '../errors.ts';

/** Why a dial failed, a bounded set for metric labels. */
export type DialFailureKind = 'refused' | 'timeout' | 'unreachable' | 'aborted' | 'other';

/** A failed dial: `WG_UPSTREAM_TIMEOUT` for the connect timeout, `WG_UPSTREAM_CONNECT` otherwise. */
export class UpstreamDialError extends WaygateError {
  readonly kind: DialFailureKind;
  constructor(kind: DialFailureKind, message: string, cause?: unknown) {
    super(kind === 'timeout' ? 'WG_UPSTREAM_TIMEOUT' : 'WG_UPSTREAM_CONNECT', message, { cause });
    this.name = 'UpstreamDialError';
    this.kind = kind;
  }
}

function classify(err: NodeJS.ErrnoException): DialFailureKind {
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

/** A dial in progress: resolves with the connected socket or rejects with {@link UpstreamDialError}. */
export interface PendingDial {
  readonly promise: Promise<Socket>;
  /** Abandons the dial (the tunnel went away first); the socket is destroyed, the promise rejects with kind `aborted`. */
  abort(): void;
}

/**
 * Dials `ip:port`. Exactly one of connect / error / timeout / abort settles the promise; the
 * timer is cleared on every path, and the socket is destroyed on every failure (its one owner
 * until the promise resolves, the tunnel afterwards).
 */
export function dialUpstream(ip: string, port: number, connectTimeoutMs: number): PendingDial {
  let settle!: { resolve: (s: Socket) => void; reject: (e: UpstreamDialError) => void };
  const promise = new Promise<Socket>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const socket = connect({ host: ip, port, allowHalfOpen: true, noDelay: true });
  let done = false;
  const finish = (err: UpstreamDialError | null): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.removeListener('connect', onConnect);
    socket.removeListener('error', onError);
    if (err) {
      socket.destroy();
      settle.reject(err);
    } else {
      settle.resolve(socket);
    }
  };
  const onConnect = (): void => finish(null);
  const onError = (err: NodeJS.ErrnoException): void =>
    finish(new UpstreamDialError(classify(err), `connect to ${ip}:${port} failed: ${err.code ?? err.message}`, err));
  const timer = setTimeout(
    () => finish(new UpstreamDialError('timeout', `connect to ${ip}:${port} timed out after ${connectTimeoutMs} ms`)),
    connectTimeoutMs,
  );
  timer.unref();
  socket.once('connect', onConnect);
  socket.once('error', onError);
  return {
    promise,
    abort: () => finish(new UpstreamDialError('aborted', `connect to ${ip}:${port} abandoned`)),
  };
}
