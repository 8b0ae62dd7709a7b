/**
 * The "same runtime, no HTTP/2" reference: a plain node:tls mutual-TLS forwarder. One TLS
 * connection carries one TCP stream to a fixed upstream, like haproxy/stunnel in mode tcp. Run as
 * its own process: `node --import tsx bench/baselines/tls-forwarder.ts <config.json>`; prints
 * `listening <port>` on stdout when ready.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

interface ForwarderConfig {
  certFile: string;
  keyFile: string;
  caFile: string;
  upstreamPort: number;
}

const config = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ForwarderConfig;

const server = tls.createServer(
  {
    cert: readFileSync(config.certFile),
    key: readFileSync(config.keyFile),
    ca: readFileSync(config.caFile),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    // Each direction's EOF stays independent (upload half-closes, then reads the byte count back).
    allowHalfOpen: true,
  },
  (client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: '127.0.0.1', port: config.upstreamPort, allowHalfOpen: true });
    upstream.setNoDelay(true);
    // pipe() forwards each EOF as a write shutdown of the other side, like the tunnel pipe.
    client.pipe(upstream);
    upstream.pipe(client);
    // Only an error tears both down: a side that finished cleanly still flushes what pipe() queued.
    const teardown = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
  },
);
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as net.AddressInfo;
  process.stdout.write(`listening ${address.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
