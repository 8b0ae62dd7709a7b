/**
 * The cast of the traffic generator: client certificates for the workloads that call through the
 * gateway, minted with the project's own dev CA (src/identity/dev-ca.ts) from the CA directory the
 * gateway trusts (`waygate certs init`, or the embedded profile's `.waygate/pki/`).
 *
 * Two identities are wrong on purpose, to exercise the transport's refusals:
 * - `no-spiffe`: signed by the trusted CA, but no URI SAN at all, only a CN that *looks* like a
 *   SPIFFE ID (docs/design.md §2: never fall back to the subject CN): every CONNECT is `no_identity`;
 * - `partner`: signed by the trusted CA with a SPIFFE ID of a trust domain the gateway does not
 *   accept: `no_identity` as well;
 * - `foreign-ca`: a valid SPIFFE ID from another trust domain's own CA: the chain does not verify,
 *   the TLS handshake fails and no audit record is written (only a handshake-failure metric).
 */
import { createCa, issueLeaf, readCaFiles, type IssuedCert } from '../../src/identity/dev-ca.ts';

/** The workloads of the demo cluster. `ns`/`sa` feed ztunnel's baggage. */
export type ClientName =
  | 'frontend'
  | 'api'
  | 'migrate'
  | 'prometheus'
  | 'dev-web'
  | 'sandbox'
  | 'no-spiffe'
  | 'partner'
  | 'foreign-ca';

export interface ClientIdentity {
  name: ClientName;
  /** The SPIFFE ID in the certificate, `''` when it carries none. */
  spiffeId: string;
  namespace: string;
  workload: string;
  certPem: string;
  keyPem: string;
  /** True when the gateway is expected to refuse the TLS handshake. */
  failsHandshake: boolean;
}

export interface ClientCast {
  /** Trust anchor for the gateway's certificate (the CA directory's `root.crt`). */
  caPem: string;
  clients: Record<ClientName, ClientIdentity>;
}

interface Spec {
  name: ClientName;
  spiffeId: string;
  namespace: string;
  workload: string;
  issuer: 'trusted' | 'foreign';
  commonName?: string;
}

const TD = 'cluster.local';

const SPECS: readonly Spec[] = [
  { name: 'frontend', spiffeId: `spiffe://${TD}/ns/prod/sa/frontend`, namespace: 'prod', workload: 'frontend', issuer: 'trusted' },
  { name: 'api', spiffeId: `spiffe://${TD}/ns/prod/sa/api`, namespace: 'prod', workload: 'api', issuer: 'trusted' },
  { name: 'migrate', spiffeId: `spiffe://${TD}/ns/prod/sa/migrate`, namespace: 'prod', workload: 'migrate', issuer: 'trusted' },
  { name: 'prometheus', spiffeId: `spiffe://${TD}/ns/monitoring/sa/prometheus`, namespace: 'monitoring', workload: 'prometheus', issuer: 'trusted' },
  { name: 'dev-web', spiffeId: `spiffe://${TD}/ns/dev/sa/web`, namespace: 'dev', workload: 'web', issuer: 'trusted' },
  { name: 'sandbox', spiffeId: `spiffe://${TD}/ns/sandbox/sa/notebook`, namespace: 'sandbox', workload: 'notebook', issuer: 'trusted' },
  {
    name: 'no-spiffe', spiffeId: '', namespace: 'legacy', workload: 'cron', issuer: 'trusted',
    commonName: `spiffe://${TD}/ns/prod/sa/frontend`,
  },
  { name: 'partner', spiffeId: 'spiffe://partner.example/ns/prod/sa/frontend', namespace: 'prod', workload: 'frontend', issuer: 'trusted' },
  { name: 'foreign-ca', spiffeId: 'spiffe://other.example/ns/prod/sa/frontend', namespace: 'prod', workload: 'frontend', issuer: 'foreign' },
];

/**
 * Mints every client certificate from the CA in `pkiDir` (`ca.crt`, `ca.key`, `root.crt`, as written by
 * `waygate certs init` and the embedded profile). Certificates live an hour: long enough for a
 * run, short enough that nothing leaked from a sample run matters.
 */
export function mintClientCast(pkiDir: string): ClientCast {
  const trusted = readCaFiles(pkiDir);
  let foreign: IssuedCert | undefined;
  const clients = {} as Record<ClientName, ClientIdentity>;
  for (const spec of SPECS) {
    let ca = trusted;
    if (spec.issuer === 'foreign') ca = foreign ??= createCa({ trustDomain: 'other.example', commonName: 'other.example CA' });
    const leaf = issueLeaf({
      ca,
      ...(spec.spiffeId ? { spiffeId: spec.spiffeId } : { dnsNames: [`${spec.workload}.${spec.namespace}.svc`] }),
      ...(spec.commonName ? { commonName: spec.commonName } : {}),
      validityHours: 1,
    });
    clients[spec.name] = {
      name: spec.name,
      spiffeId: spec.spiffeId,
      namespace: spec.namespace,
      workload: spec.workload,
      certPem: leaf.chainPem,
      keyPem: leaf.keyPem,
      failsHandshake: spec.issuer === 'foreign',
    };
  }
  return { caPem: trusted.caPem ?? trusted.certPem, clients };
}
