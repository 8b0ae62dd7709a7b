/**
 * Echo servers listening on the same port on every given address: the pods of one service in the
 * waypoint tests (a Service has one targetPort). Port 0 on the first address picks the port; the
 * others take the same one, retried from scratch (up to 5 times) when another test holds it there.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface EchoHosts {
  port: number;
  servers: Server[];
  /** Open connections, so a test can cut them (its `after` destroys them). */
  sockets: Set<Socket>;
}

export async function echoOnEvery(hosts: readonly string[]): Promise<EchoHosts> {
  const sockets = new Set<Socket>();
  for (let attempt = 0; ; attempt++) {
    const servers: Server[] = [];
    try {
      let port = 0;
      for (const host of hosts) {
        const s = createServer({ allowHalfOpen: true }, (sock) => {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => undefined);
          sock.pipe(sock);
        });
        servers.push(s);
        s.listen(port, host);
        await once(s, 'listening');
        port = (s.address() as AddressInfo).port;
      }
      return { port, servers, sockets };
    } catch (err) {
      for (const s of servers) s.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
    }
  }
}
