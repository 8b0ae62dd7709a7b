/**
 * Resets an HTTP/2 stream with `code` and nothing before it. `Http2Stream.close(code)` first ends
 * the writable side when it is not already ending (Node's lib/internal/http2/core.js
 * `closeStream`, Node 20 and 24 alike), and on an idle stream that sends END_STREAM ahead of the
 * RST_STREAM: the peer reads an orderly end, then the reset (a ztunnel shuts its TCP write side,
 * so the application sees a FIN before the reset; RFC 9113 §8.5 makes CONNECT_ERROR the TCP reset).
 * Marking the writable side as ending first (the stream state close() reads) leaves the
 * RST_STREAM alone; the stream is destroyed right after, so nothing writes to it again. (Queuing
 * an empty write to hold end() back worked on Node 20 only: Node 24 puts END_STREAM on that write.)
 * Used for the client's stream (src/hbone/tunnel.ts) and the HBONE upstream's (src/upstream/hbone.ts).
 */
import type { Http2Stream } from 'node:http2';

export function resetAlone(stream: Http2Stream, code: number): void {
  if (stream.closed || stream.destroyed) return;
  const state = (stream as unknown as { _writableState?: { ending: boolean } })._writableState;
  if (state && !state.ending) state.ending = true;
  stream.close(code);
}
