/**
 * Echo backends for the demo, the traffic generator and the end-to-end test: plain TCP servers on
 * one loopback address that write back every byte they read and half-close when the client does
 * (so a tunnel's close record counts the same bytes in both directions).
 *
 * The example policies key on destination ports (8080 API, 5432 database, 9090 metrics), so the
 * backends must listen on those exact ports. To never collide with something a developer already
 * runs on 127.0.0.1:8080, {@link startEchoBackends} can pick a random address in 127.0.0.0/8
 * (Linux routes the whole block to `lo`; the embedded profile allows all of it as a destination).
 */
import net from 'node:net';

/** One echo listener per port, all on the same host. */
export interface EchoBackends {
  /** The loopback address every listener is bound to. */
  readonly host: string;
  readonly ports: readonly number[];
  /** Connections accepted so far, per port: the test's proof that a denied tunnel never arrived. */
  connections(port?: number): number;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

export interface EchoBackendOptions {
  /** Ports to listen on (each must be free on `host`). */
  ports: readonly number[];
  /** A loopback address; default: a random one in 127.0.0.0/8 (see the file comment). */
  host?: string;
  /** Attempts with fresh random addresses when a port is taken; default 8 (ignored with `host`). */
  attempts?: number;
}

/** A random 127.x.y.z, avoiding 127.0.0.0/16 where developers' own services usually listen. */
export function randomLoopbackAddress(random: () => number = Math.random): string {
  const octet = (lo: number): number => lo + Math.floor(random() * (255 - lo));
  return `127.${octet(1)}.${octet(0)}.${octet(1)}`;
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

async function tryStart(host: string, ports: readonly number[]): Promise<EchoBackends> {
  const counts = new Map<number, number>();
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];
  try {
    for (const port of ports) {
      counts.set(port, 0);
      // allowHalfOpen: the client's FIN (END_STREAM through the gateway) must not close our write
      // side before the echo of everything it sent has been written back.
      const server = net.createServer({ allowHalfOpen: true }, (socket) => {
        counts.set(port, (counts.get(port) ?? 0) + 1);
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => socket.destroy());
        socket.pipe(socket);
      });
      servers.push(server);
      await listen(server, host, port);
    }
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    throw err;
  }
  return {
    host,
    ports,
    connections: (port?: number) =>
      port === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(port) ?? 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map(closeServer));
    },
  };
}

/**
 * Starts one echo server per port on one loopback address. With no `host`, retries on a fresh
 * random address when a port is already taken (EADDRINUSE) or the address is unusable.
 */
export async function startEchoBackends(opts: EchoBackendOptions): Promise<EchoBackends> {
  if (opts.host !== undefined) return tryStart(opts.host, opts.ports);
  const attempts = opts.attempts ?? 8;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await tryStart(randomLoopbackAddress(), opts.ports);
    } catch (err) {
      last = err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EADDRNOTAVAIL') throw err;
    }
  }
  throw last;
}

/**
 * True when nothing listens on `host:port`: binding it succeeds (Linux refuses to bind a
 * specific address while a wildcard listener holds the port, so this also catches 0.0.0.0:port).
 * The traffic generator uses it to pick a port that will refuse the gateway's dial.
 */
export async function isPortClosed(host: string, port: number): Promise<boolean> {
  const probe = net.createServer();
  try {
    await listen(probe, host, port);
    return true;
  } catch {
    return false;
  } finally {
    await closeServer(probe);
  }
}
