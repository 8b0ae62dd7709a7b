/**
 * HTTP/2 settings of the HBONE listener (docs/design.md §2 "HTTP/2", §8.2).
 *
 * - Flow-control windows are the one knob that matters for throughput: the stream window is
 *   >= 1 MiB and the connection window at least 4x it (smaller is slow; equal lets one slow tunnel
 *   stall every other tunnel on the connection). The connection window is raised with
 *   `session.setLocalWindowSize()` because SETTINGS cannot change it (RFC 9113 §6.9.2).
 * - Large windows need a larger `maxSessionMemory` or busy sessions hit ENHANCE_YOUR_CALM.
 * - 200 concurrent streams, header list <= 64 KiB, PING every 10 s, closed after 20 s unanswered.
 *
 * Memory bound per connection (docs/ztunnel-interop.md D14). Node hands the **connection** window
 * back as soon as a DATA frame arrives (`node_http2.cc` `OnDataChunkReceived` consumes it before
 * the JS stream reads anything); only the **stream** window waits for a reader. So the connection
 * window does not bound what a peer can make the gateway buffer: every stream may fill its own
 * window, whether its tunnel is open to a destination that does not read or still waiting for its
 * dial (a peer may send DATA before the 200). The bound is therefore
 *
 *     maxConcurrentStreams x (streamWindowBytes + 2 x write budget)   (defaults: 200 x 1.5 MiB = 300 MiB)
 *
 * where the write budget (`TUNNEL_WRITE_BUFFER_BYTES` in tunnel.ts, 256 KiB, plus one chunk) is
 * what an open tunnel lets queue towards each side before it stops reading the other, plus socket
 * buffers. A CONNECT not answered yet, whether dialing or waiting for one of the connection's
 * `maxPendingDialsPerConnection` dial slots (dial-queue.ts), has no upstream and its stream is
 * not read before `Tunnel.open()`, so it holds at most its stream window of early DATA: at most
 * `maxConcurrentStreams x streamWindowBytes` (200 MiB by default) before any answer, inside the
 * bound above. The dial cap bounds sockets being dialed, not this memory (a CONNECT beyond it
 * waits, and waiters never outnumber the streams). Hence the 1 MiB default stream window, the
 * floor docs/design.md §2 allows (ztunnel's 4 MiB would make it 800 MiB). `maxSessionMemory` only caps
 * nghttp2's own buffers (frames queued to send, header tables), not the JS-side stream buffers;
 * its default leaves room for two connection windows plus 16 MB of headers and output.
 */
import type { Settings } from 'node:http2';
import { optionInRange } from '../config/ranges.ts';
import { WaygateError } from '../errors.ts';

export interface H2Options {
  /**
   * SETTINGS_INITIAL_WINDOW_SIZE; default 1 MiB (the floor of docs/design.md §2), at least 1 MiB. It bounds
   * the memory a peer can pin per stream (see the module comment): raise it with care.
   */
  streamWindowBytes?: number;
  /** Connection receive window; default 4x the stream window, at least 4x. */
  connectionWindowBytes?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS; default 200 (range and default: `limits.maxStreamsPerConnection`, src/config/ranges.ts). */
  maxConcurrentStreams?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE; default 64 KiB (range and default: `limits.maxHeaderListBytes`, src/config/ranges.ts). */
  maxHeaderListBytes?: number;
  /** nghttp2 memory cap per session in MB; default max(32, 2 x connection window + 16 MB). */
  maxSessionMemoryMb?: number;
  /** Interval between keep-alive PINGs; default 10 s. */
  pingIntervalMs?: number;
  /** A session whose PING stays unanswered this long is closed; default 20 s. */
  pingTimeoutMs?: number;
}

export type ResolvedH2Options = Required<H2Options>;

const MiB = 1024 * 1024;
/** RFC 9113 §6.9.1: windows are at most 2^31-1. */
const MAX_WINDOW = 2 ** 31 - 1;
/**
 * The listener's default SETTINGS_INITIAL_WINDOW_SIZE: the memory bound per stream (module
 * comment). Smaller than the ztunnel-like client's CLIENT_STREAM_WINDOW_BYTES (client.ts) on purpose.
 */
export const LISTENER_STREAM_WINDOW_BYTES = MiB;

function int(path: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new WaygateError('WG_CONFIG', `${path}: expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates H2 options and fills in defaults; throws `WG_CONFIG` naming the field. */
export function resolveH2Options(o: H2Options = {}): ResolvedH2Options {
  const stream = int('h2.streamWindowBytes', o.streamWindowBytes ?? LISTENER_STREAM_WINDOW_BYTES, MiB, MAX_WINDOW);
  const conn = int('h2.connectionWindowBytes', o.connectionWindowBytes ?? Math.min(4 * stream, MAX_WINDOW), 1, MAX_WINDOW);
  if (conn < Math.min(4 * stream, MAX_WINDOW)) {
    throw new WaygateError(
      'WG_CONFIG',
      `h2.connectionWindowBytes: ${conn} is less than 4x the stream window (${4 * stream}); an equal window lets one stalled tunnel block the connection`,
    );
  }
  const pingIntervalMs = int('h2.pingIntervalMs', o.pingIntervalMs ?? 10_000, 1, 3_600_000);
  const pingTimeoutMs = int('h2.pingTimeoutMs', o.pingTimeoutMs ?? 2 * pingIntervalMs, 1, 3_600_000);
  // nghttp2 accounts buffered frames against this cap; leave room for the full connection window
  // plus headers and output buffers.
  const defaultMemoryMb = Math.max(32, Math.ceil((2 * conn) / MiB) + 16);
  return {
    streamWindowBytes: stream,
    connectionWindowBytes: conn,
    maxConcurrentStreams: optionInRange('limits.maxStreamsPerConnection', 'h2.maxConcurrentStreams', o.maxConcurrentStreams),
    maxHeaderListBytes: optionInRange('limits.maxHeaderListBytes', 'h2.maxHeaderListBytes', o.maxHeaderListBytes),
    maxSessionMemoryMb: int('h2.maxSessionMemoryMb', o.maxSessionMemoryMb ?? defaultMemoryMb, 1, 65_536),
    pingIntervalMs,
    pingTimeoutMs,
  };
}

/** The SETTINGS frame the server sends. Push is off: HBONE never pushes (RFC 9113 §8.4). */
export function h2Settings(o: ResolvedH2Options): Settings {
  return {
    initialWindowSize: o.streamWindowBytes,
    maxConcurrentStreams: o.maxConcurrentStreams,
    maxHeaderListSize: o.maxHeaderListBytes,
    enablePush: false,
    // ztunnel sends frames up to 1 MiB; accepting them saves frame headers (docs/design.md §8.2: no measurable cost either way).
    maxFrameSize: MiB,
  };
}
