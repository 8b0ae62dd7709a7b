/**
 * Certificates shared by every path of the benchmark: one ECDSA P-256 CA (the project's own dev CA)
 * and SPIFFE leaves for the server side (gateway, haproxy, stunnel, node:tls forwarder all present
 * the same one) and the load generator, so the handshake cost compared is the same crypto.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createCa, issueLeaf } from '../../src/identity/dev-ca.ts';
import type { ForwarderFiles } from '../baselines/forwarders.ts';
import type { ClientTls } from './traffic.ts';

export const GATEWAY_SPIFFE_ID = 'spiffe://cluster.local/ns/waygate/sa/gateway';
export const LOADGEN_SPIFFE_ID = 'spiffe://cluster.local/ns/bench/sa/loadgen';
/**
 * The destination workload of the waypoint scenario (waypoint.bench.ts): what its ztunnel
 * stand-in (a second waygate) and the baseline's TLS terminator present, and what the gateway
 * under test expects from it (the mesh file's workload `bench/backend`).
 */
export const DESTINATION_SPIFFE_ID = 'spiffe://cluster.local/ns/bench/sa/backend';

export interface BenchPki {
  files: ForwarderFiles;
  client: ClientTls;
  /** The destination workload's leaf ({@link DESTINATION_SPIFFE_ID}), as PEM files beside the others. */
  destination: { certFile: string; keyFile: string };
}

/** Mints the CA and the leaves into `dir` (server and destination cert, key and CA as PEM files). */
export function mintPki(dir: string): BenchPki {
  const ca = createCa({ trustDomain: 'cluster.local' });
  const server = issueLeaf({ ca, spiffeId: GATEWAY_SPIFFE_ID, dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  const client = issueLeaf({ ca, spiffeId: LOADGEN_SPIFFE_ID });
  const destination = issueLeaf({ ca, spiffeId: DESTINATION_SPIFFE_ID });
  const files: ForwarderFiles = {
    dir,
    certFile: path.join(dir, 'server.pem'),
    keyFile: path.join(dir, 'server-key.pem'),
    caFile: path.join(dir, 'ca.pem'),
  };
  writeFileSync(files.certFile, server.chainPem);
  writeFileSync(files.keyFile, server.keyPem, { mode: 0o600 });
  writeFileSync(files.caFile, ca.certPem);
  const dest = { certFile: path.join(dir, 'destination.pem'), keyFile: path.join(dir, 'destination-key.pem') };
  writeFileSync(dest.certFile, destination.chainPem);
  writeFileSync(dest.keyFile, destination.keyPem, { mode: 0o600 });
  return { files, client: { cert: client.chainPem, key: client.keyPem, ca: ca.certPem }, destination: dest };
}
