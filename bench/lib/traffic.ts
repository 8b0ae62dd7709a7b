/**
 * Load shapes, written once against a stream opener so every path (direct TCP, TLS forwarders,
 * HBONE tunnels) runs exactly the same traffic. Each returns what it measured from the client side;
 * CPU is read from /proc by the caller.
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

/** Opens one end-to-end byte stream to the benchmark backend. */
export type Opener = () => Promise<Duplex>;

const CHUNK = Buffer.alloc(256 * 1024, 0x62);

export function directOpener(port: number): Opener {
  return async () => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.setNoDelay(true);
    await once(s, 'connect');
    return s;
  };
}

export interface ClientTls {
  cert: string;
  key: string;
  ca: string;
}

/** A mutual-TLS client like ztunnel's (TLS 1.3, no SNI, chain verified, no hostname check). */
export function tlsOpener(port: number, creds: ClientTls): Opener {
  return async () => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      cert: creds.cert,
      key: creds.key,
      ca: creds.ca,
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined,
      allowHalfOpen: true,
    } as tls.ConnectionOptions);
    s.setNoDelay(true);
    await once(s, 'secureConnect');
    return s;
  };
}

/**
 * Waits for a stream both sides have ended to close by itself. Destroying it instead would make an
 * HTTP/2 stream send RST_STREAM(CANCEL), and nghttp2 (Node >= 20.8) answers more than ~1,000 resets
 * per connection with GOAWAY(INTERNAL_ERROR) (its CVE-2023-44487 "rapid reset" limit), so a client
 * that resets every finished tunnel gets its connection closed: real clients end streams cleanly.
 */
export async function finish(stream: Duplex): Promise<void> {
  if (stream.destroyed || (stream as { closed?: boolean }).closed) return;
  const timer = setTimeout(() => stream.destroy(), 10_000);
  try {
    await once(stream, 'close');
  } catch {
    // an error after both EOFs still closes the stream: nothing left to wait for
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads to EOF with listeners, not `for await`: the async iterator destroys the stream when it
 * finishes, which for an HTTP/2 stream means a RST_STREAM (see finish()).
 */
function readAll(stream: Duplex): Promise<{ bytes: number; tail: Buffer }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let tail: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      tail = chunk.length >= 8 ? chunk.subarray(chunk.length - 8) : Buffer.concat([tail, chunk]).subarray(-8);
    });
    stream.once('end', () => resolve({ bytes, tail }));
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`stream closed after ${bytes} bytes without EOF`)));
  });
}

async function writeBytes(stream: Duplex, total: number): Promise<void> {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, CHUNK.length);
    left -= n;
    if (!stream.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) await once(stream, 'drain');
  }
}

/** Client -> destination: sends `total` bytes, half-closes, checks the byte count echoed back. */
export async function upload(open: Opener, total: number): Promise<void> {
  const s = await open();
  const reading = readAll(s);
  // If the write side fails first, the read side's rejection must not go unhandled.
  reading.catch(() => undefined);
  s.write('U');
  await writeBytes(s, total);
  s.end();
  const { tail } = await reading;
  const got = Number(tail.readBigUInt64BE(0));
  if (got !== total) throw new Error(`upload: destination received ${got} of ${total} bytes`);
  await finish(s);
}

/** Destination -> client: asks for `total` bytes and reads them to EOF. */
export async function download(open: Opener, total: number): Promise<void> {
  const s = await open();
  const reading = readAll(s);
  reading.catch(() => undefined);
  const cmd = Buffer.alloc(9);
  cmd.write('D');
  cmd.writeBigUInt64BE(BigInt(total), 1);
  // Half-close only after the destination's EOF: stunnel tears the whole connection down when the
  // client's close_notify arrives while it is still sending, truncating the download.
  s.write(cmd);
  const { bytes } = await reading;
  s.end();
  if (bytes !== total) throw new Error(`download: received ${bytes} of ${total} bytes`);
  await finish(s);
}

/** One short exchange: open, `size`-byte echo, close. The CONNECT-setup unit of work. */
export async function echoOnce(open: Opener, size = 100): Promise<void> {
  const s = await open();
  const payload = Buffer.alloc(size, 0x63);
  const reading = readAll(s);
  reading.catch(() => undefined);
  s.write('E');
  s.end(payload);
  const { bytes } = await reading;
  if (bytes !== size) throw new Error(`echo: got ${bytes} of ${size} bytes`);
  await finish(s);
}

/** Ping-pong of `size`-byte messages over one stream; returns round-trip times in microseconds. */
export async function echoLatency(open: Opener, messages: number, size = 64): Promise<number[]> {
  const s = await open();
  s.write('E');
  const payload = Buffer.alloc(size, 0x64);
  const rtts: number[] = [];
  let got = 0;
  let resolveOne: (() => void) | null = null;
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= size && resolveOne) {
      got -= size;
      const r = resolveOne;
      resolveOne = null;
      r();
    }
  });
  for (let i = 0; i < messages; i++) {
    const t0 = process.hrtime.bigint();
    const done = new Promise<void>((r) => (resolveOne = r));
    s.write(payload);
    await done;
    rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const ended = once(s, 'end');
  s.end();
  await ended;
  await finish(s);
  return rtts;
}

/** Runs `fn` `total` times with at most `inFlight` concurrently. */
export async function runConcurrent(total: number, inFlight: number, fn: () => Promise<void>): Promise<void> {
  let started = 0;
  const worker = async () => {
    while (started < total) {
      started++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
}
