import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { checkTrustDomain, identityFromCertificate, PeerIdentityCache, uriSansFromDer } from '../../src/identity/peer-identity.ts';
import { WaygateError } from '../../src/errors.ts';
import { GATEWAY_SPIFFE_ID, testPki } from '../helpers/pki.ts';

const pki = testPki();
const der = (pem: string): Buffer => new X509Certificate(pem).raw;

describe('identityFromCertificate', () => {
  const cases: Array<{ name: string; cert: () => string; spiffeId: string | null; uris: string[] }> = [
    {
      name: 'one SPIFFE URI SAN',
      cert: () => pki.clientFor('spiffe://cluster.local/ns/prod/sa/api').certPem,
      spiffeId: 'spiffe://cluster.local/ns/prod/sa/api',
      uris: ['spiffe://cluster.local/ns/prod/sa/api'],
    },
    {
      name: 'two URI SANs: the first one counts',
      cert: () => pki.issue({ spiffeId: 'spiffe://cluster.local/ns/a/sa/first', uris: ['spiffe://cluster.local/ns/b/sa/second'] }).certPem,
      spiffeId: 'spiffe://cluster.local/ns/a/sa/first',
      uris: ['spiffe://cluster.local/ns/a/sa/first', 'spiffe://cluster.local/ns/b/sa/second'],
    },
    {
      name: 'no URI SAN but a SPIFFE-looking CN: no identity (never the CN)',
      cert: () => pki.issue({ commonName: 'spiffe://cluster.local/ns/prod/sa/admin', dnsNames: ['admin.example'] }).certPem,
      spiffeId: null,
      uris: [],
    },
    {
      name: 'no SAN extension at all',
      cert: () => pki.issue({ commonName: 'plain' }).certPem,
      spiffeId: null,
      uris: [],
    },
    {
      name: 'a non-SPIFFE URI first, then a SPIFFE one: the SPIFFE one',
      cert: () => pki.issue({ uris: ['https://example.com/workload', 'spiffe://cluster.local/ns/prod/sa/web'] }).certPem,
      spiffeId: 'spiffe://cluster.local/ns/prod/sa/web',
      uris: ['https://example.com/workload', 'spiffe://cluster.local/ns/prod/sa/web'],
    },
    {
      name: 'an invalid SPIFFE URI first (upper-case trust domain), then a valid one',
      cert: () => pki.issue({ uris: ['spiffe://Cluster.Local/ns/x/sa/y', 'spiffe://cluster.local/ns/x/sa/y'] }).certPem,
      spiffeId: 'spiffe://cluster.local/ns/x/sa/y',
      uris: ['spiffe://Cluster.Local/ns/x/sa/y', 'spiffe://cluster.local/ns/x/sa/y'],
    },
    {
      // Node's subjectaltname string would read as two URIs; the DER holds one (not a SPIFFE ID).
      name: 'a URI containing ", URI:spiffe://..." is one name, not two',
      cert: () => pki.issue({ uris: ['https://evil.example/a, URI:spiffe://cluster.local/ns/prod/sa/admin'] }).certPem,
      spiffeId: null,
      uris: ['https://evil.example/a, URI:spiffe://cluster.local/ns/prod/sa/admin'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const pem = c.cert();
      const id = identityFromCertificate(der(pem));
      assert.equal(id.spiffeId?.id ?? null, c.spiffeId);
      assert.deepEqual(id.uris, c.uris);
      const x = new X509Certificate(pem);
      assert.equal(id.fingerprint256, x.fingerprint256);
      assert.equal(id.notAfter.getTime(), new Date(x.validTo).getTime());
    });
  }

  it('splits the SPIFFE ID into Istio namespace and service account', () => {
    const id = identityFromCertificate(der(pki.clientFor('spiffe://cluster.local/ns/prod/sa/api').certPem));
    assert.equal(id.spiffeId?.trustDomain, 'cluster.local');
    assert.equal(id.spiffeId?.namespace, 'prod');
    assert.equal(id.spiffeId?.serviceAccount, 'api');
  });

  it('rejects bytes that are not a certificate with WG_CERT', () => {
    assert.throws(() => uriSansFromDer(Buffer.from('not der')), (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT');
  });
});

describe('checkTrustDomain', () => {
  const prod = identityFromCertificate(der(pki.clientFor('spiffe://cluster.local/ns/prod/sa/api').certPem));
  const other = identityFromCertificate(der(pki.clientFor('spiffe://other.domain/ns/prod/sa/api').certPem));
  const none = identityFromCertificate(der(pki.issue({ commonName: 'x' }).certPem));
  const cases = [
    { name: 'accepted', identity: prod, accepted: ['cluster.local'], ok: true, reason: undefined },
    { name: 'one of several', identity: other, accepted: ['cluster.local', 'other.domain'], ok: true, reason: undefined },
    { name: 'foreign domain', identity: other, accepted: ['cluster.local'], ok: false, reason: 'untrusted_domain' },
    { name: 'no SPIFFE ID', identity: none, accepted: ['cluster.local'], ok: false, reason: 'no_identity' },
    { name: 'no certificate', identity: null, accepted: ['cluster.local'], ok: false, reason: 'no_identity' },
    { name: 'nothing accepted', identity: prod, accepted: [], ok: false, reason: 'untrusted_domain' },
  ] as const;
  for (const c of cases) {
    it(c.name, () => {
      const r = checkTrustDomain(c.identity, c.accepted);
      assert.equal(r.ok, c.ok);
      if (!r.ok) assert.equal(r.reason, c.reason);
    });
  }
});

describe('PeerIdentityCache', () => {
  it('resolves the peer of a real mTLS socket, caches by fingerprint, returns null without a client cert', async () => {
    const cache = new PeerIdentityCache({ maxEntries: 2 });
    const seen: Array<ReturnType<PeerIdentityCache['resolve']>> = [];
    const server = tls.createServer({
      cert: pki.serverCert.chainPem,
      key: pki.serverCert.keyPem,
      ca: pki.trustBundlePem,
      requestCert: true,
      rejectUnauthorized: false,
    });
    server.on('secureConnection', (s) => {
      seen.push(cache.resolve(s));
      s.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const connect = async (cert?: { chainPem: string; keyPem: string }): Promise<void> => {
      const sock = tls.connect({ host: '127.0.0.1', port, ca: pki.trustBundlePem, servername: 'localhost', ...(cert ? { cert: cert.chainPem, key: cert.keyPem } : {}) });
      sock.resume();
      await once(sock, 'end');
      sock.destroy();
    };
    try {
      const api = pki.clientFor('spiffe://cluster.local/ns/prod/sa/api');
      await connect(api);
      await connect(api);
      await connect();
      assert.equal(seen.length, 3);
      assert.equal(seen[0]?.spiffeId?.id, 'spiffe://cluster.local/ns/prod/sa/api');
      assert.equal(seen[1], seen[0], 'the second connection is served from the cache');
      assert.equal(seen[2], null);
      assert.equal(cache.size, 1);
      // The bound holds: a third distinct certificate evicts the least recently used.
      await connect(pki.clientFor(GATEWAY_SPIFFE_ID));
      await connect(pki.clientFor('spiffe://cluster.local/ns/prod/sa/web'));
      assert.equal(cache.size, 2);
    } finally {
      server.close();
    }
  });
});
