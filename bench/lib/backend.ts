/**
 * The benchmark destination: one TCP server whose first byte picks the behaviour, so every path
 * (direct, haproxy, stunnel, node:tls, waygate) reaches the same server through one upstream port.
 *   'U'           upload sink: read until EOF, answer the byte count as 8 bytes, end.
 *   'D' + u64     download source: send that many bytes, end.
 *   'E'           echo until EOF.
 * It runs as its own process (`startBackendProcess`, on the load generator's CPU like everything
 * that is not measured), as a destination does: in the load generator's process its reads (a fresh
 * 64 KiB Buffer each, 16,000 per GiB) drove V8 into a full mark-compact of the load generator's
 * heap every 64 MB of external memory (97 in 5 s of upload, a quarter of that CPU), and the client
 * side of every path got slower. `startBackend` runs it in-process (the entry point uses it).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { trackChild } from '../baselines/forwarders.ts';

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
  /** The address it listens on (127.0.0.1 unless given). */
  host: string;
  /** Its process id when it runs as its own process (startBackendProcess), else null. */
  pid: number | null;
  close(): Promise<void>;
}

/** `host`: the loopback address to listen on (the waypoint scenario's pod address is 127.0.0.2). */
export async function startBackend(host = '127.0.0.1'): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    handle(s);
  });
  server.maxConnections = 100_000;
  server.listen(0, host, 4096);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    host,
    pid: null,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/**
 * Starts the backend as a child process (bench/lib/backend-main.ts). It inherits this process's
 * CPU affinity: the load generator's CPU.
 */
export async function startBackendProcess(host = '127.0.0.1'): Promise<Backend> {
  const main = new URL('./backend-main.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', main, host], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  trackChild(child);
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`bench backend exited with ${code} before listening`);
  });
  const [line] = (await Promise.race([once(lines, 'line'), exited])) as [string];
  const port = Number(/^listening (\d+)$/.exec(line)?.[1]);
  if (!Number.isInteger(port)) throw new Error(`bench backend: unexpected first line ${JSON.stringify(line)}`);
  return {
    port,
    host,
    pid: child.pid!,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = once(child, 'exit');
      child.kill('SIGTERM');
      await done;
    },
  };
}
