/**
 * The benchmark destination: one TCP server whose first byte picks the behaviour, so every path
 * (direct, haproxy, stunnel, node:tls, waygate) reaches the same server through one upstream port.
 *   'U'           upload sink: read until EOF, answer the byte count as 8 bytes, end.
 *   'D' + u64     download source: send that many bytes, end.
 *   'E'           echo until EOF.
 * It runs in the load generator's process, on the load generator's CPU.
 */
import { once } from 'node:events';
import net from 'node:net';

const CHUNK = Buffer.alloc(256 * 1024, 0x61);

function handle(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let mode: 'cmd' | 'U' | 'E' = 'cmd';
  let pending: Buffer = Buffer.alloc(0);
  let received = 0;
  const onData = (data: Buffer) => {
    if (mode === 'U') {
      received += data.length;
      return;
    }
    if (mode === 'E') {
      if (!socket.write(data)) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
      return;
    }
    pending = pending.length ? Buffer.concat([pending, data]) : data;
    const cmd = String.fromCharCode(pending[0]!);
    if (cmd === 'U') {
      mode = 'U';
      received = pending.length - 1;
      socket.once('end', () => {
        const out = Buffer.alloc(8);
        out.writeBigUInt64BE(BigInt(received));
        socket.end(out);
      });
    } else if (cmd === 'E') {
      mode = 'E';
      socket.once('end', () => socket.end());
      if (pending.length > 1) socket.write(pending.subarray(1));
    } else if (cmd === 'D') {
      if (pending.length < 9) return;
      socket.off('data', onData);
      socket.resume();
      let left = Number(pending.readBigUInt64BE(1));
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
            socket.once('drain', pump);
            return;
          }
        }
        socket.end();
      };
      pump();
    } else {
      socket.destroy();
    }
  };
  socket.on('data', onData);
}

export interface Backend {
  port: number;
  connections(): number;
  close(): Promise<void>;
}

export async function startBackend(): Promise<Backend> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    count++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    handle(s);
  });
  server.maxConnections = 100_000;
  server.listen(0, '127.0.0.1', 4096);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}
