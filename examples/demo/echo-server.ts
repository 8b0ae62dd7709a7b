/**
 * A tiny TCP echo backend for the `npm start` demo: what a tunnel reaches when the policies allow
 * it. Listens on 127.0.0.1 only (the embedded gateway forwards only to loopback).
 *
 *   node --import tsx examples/demo/echo-server.ts [port]     # default 8080
 *
 * Port 8080 is the one `policies/api-from-frontend.yaml` opens to
 * spiffe://cluster.local/ns/prod/sa/frontend.
 */
import net from 'node:net';

const port = Number(process.argv[2] ?? 8080);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`usage: echo-server.ts [port]   (got ${process.argv[2]})\n`);
  process.exit(2);
}

const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  const peer = `${socket.remoteAddress}:${socket.remotePort}`;
  process.stderr.write(`echo: connection from ${peer}\n`);
  socket.on('error', () => socket.destroy());
  // Echo everything back; when the client half-closes, finish our side too.
  socket.pipe(socket);
  socket.on('close', () => process.stderr.write(`echo: ${peer} closed\n`));
});

server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`echo: listening on 127.0.0.1:${port}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
