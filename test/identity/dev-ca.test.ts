import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createCa, issueLeaf, readCaFiles, writeCaFiles } from '../../src/identity/dev-ca.ts';
import { uriSansFromDer } from '../../src/identity/peer-identity.ts';
import { WaygateError } from '../../src/errors.ts';

function pemCount(pem: string): number {
  return pem.split('-----BEGIN CERTIFICATE-----').length - 1;
}

describe('dev CA', () => {
  const root = createCa({ trustDomain: 'example.org' });
  const intermediate = createCa({ parent: root, pathLen: 0 });

  it('creates a self-signed ECDSA P-256 root with SPIRE-like extensions', () => {
    const x = new X509Certificate(root.certPem);
    assert.equal(x.ca, true);
    assert.equal(x.checkIssued(x), true);
    assert.equal(x.verify(x.publicKey), true);
    assert.equal(x.publicKey.asymmetricKeyType, 'ec');
    assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(uriSansFromDer(x.raw), ['spiffe://example.org']);
    assert.equal(root.spiffeId, 'spiffe://example.org');
    assert.equal(root.isCa, true);
    assert.equal(root.chainPem, root.certPem);
    assert.equal(root.caPem, root.certPem);
    assert.equal(root.fingerprint256, x.fingerprint256);
    assert.match(x.toLegacyObject().fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    // ~10 years by default
    const days = (root.notAfter.getTime() - root.notBefore.getTime()) / 86_400_000;
    assert.ok(days > 3649 && days < 3651, `validity ${days} days`);
    // The key matches the certificate.
    const pub = createPublicKey(createPrivateKey(root.keyPem)).export({ type: 'spki', format: 'pem' });
    assert.equal(pub, x.publicKey.export({ type: 'spki', format: 'pem' }));
  });

  it('marks basicConstraints and keyUsage critical', () => {
    // Node does not expose criticality; check the DER: the extension SEQUENCE carries BOOLEAN TRUE.
    const raw = new X509Certificate(root.certPem).raw;
    const hex = raw.toString('hex');
    // basicConstraints OID 2.5.29.19 = 06 03 55 1d 13, then 01 01 ff (critical)
    assert.match(hex, /0603551d130101ff/);
    // keyUsage OID 2.5.29.15 = 06 03 55 1d 0f, critical, BIT STRING 03 02 01 06 (keyCertSign|cRLSign)
    assert.match(hex, /0603551d0f0101ff040403020106/);
  });

  it('creates an intermediate signed by the root, inheriting its trust domain', () => {
    const x = new X509Certificate(intermediate.certPem);
    const r = new X509Certificate(root.certPem);
    assert.equal(x.ca, true);
    assert.equal(x.checkIssued(r), true);
    assert.equal(x.verify(r.publicKey), true);
    assert.equal(x.verify(x.publicKey), false);
    assert.equal(intermediate.spiffeId, 'spiffe://example.org');
    assert.equal(intermediate.caPem, root.certPem);
    assert.equal(pemCount(intermediate.chainPem), 1, 'the chain excludes the root');
  });

  const leafCases: Array<{ name: string; opts: Parameters<typeof issueLeaf>[0]; uris: string[]; spiffeId?: string; dns?: string; ip?: string }> = [
    { name: 'SPIFFE ID only', opts: { ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/b' }, uris: ['spiffe://example.org/ns/a/sa/b'], spiffeId: 'spiffe://example.org/ns/a/sa/b' },
    {
      name: 'two URI SANs keep their order',
      opts: { ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/first', uris: ['spiffe://example.org/ns/a/sa/second'] },
      uris: ['spiffe://example.org/ns/a/sa/first', 'spiffe://example.org/ns/a/sa/second'],
      spiffeId: 'spiffe://example.org/ns/a/sa/first',
    },
    { name: 'no URI SAN, SPIFFE-looking CN', opts: { ca: root, commonName: 'spiffe://example.org/ns/a/sa/cn' }, uris: [] },
    {
      name: 'non-SPIFFE URI first',
      opts: { ca: root, uris: ['https://example.org/x', 'spiffe://example.org/ns/a/sa/b'] },
      uris: ['https://example.org/x', 'spiffe://example.org/ns/a/sa/b'],
    },
    {
      name: 'DNS and IP SANs',
      opts: { ca: intermediate, spiffeId: 'spiffe://example.org/ns/w/sa/gw', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] },
      uris: ['spiffe://example.org/ns/w/sa/gw'],
      spiffeId: 'spiffe://example.org/ns/w/sa/gw',
      dns: 'DNS:localhost',
      ip: 'IP Address:127.0.0.1',
    },
  ];
  for (const c of leafCases) {
    it(`issues a leaf: ${c.name}`, () => {
      const leaf = issueLeaf(c.opts);
      const x = new X509Certificate(leaf.certPem);
      const issuer = new X509Certificate(c.opts.ca.certPem);
      assert.equal(x.ca, false);
      assert.equal(x.checkIssued(issuer), true);
      assert.equal(x.verify(issuer.publicKey), true);
      assert.deepEqual(uriSansFromDer(x.raw), c.uris);
      assert.equal(leaf.spiffeId, c.spiffeId);
      assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
      if (c.opts.commonName) assert.match(x.subject, new RegExp(`CN=${c.opts.commonName}`));
      if (c.dns) assert.ok(x.subjectAltName?.includes(c.dns));
      if (c.ip) assert.ok(x.subjectAltName?.includes(c.ip));
      assert.equal(pemCount(leaf.chainPem), c.opts.ca === root ? 1 : 2);
      assert.equal(leaf.caPem, root.certPem);
    });
  }

  it('honours explicit validity (expired certificates) and extended key usage choices', () => {
    const notBefore = new Date('2020-01-01T00:00:00Z');
    const notAfter = new Date('2020-01-02T00:00:00Z');
    const expired = issueLeaf({ ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/old', notBefore, notAfter, clientAuth: false });
    assert.equal(expired.notBefore.toISOString(), notBefore.toISOString());
    assert.equal(expired.notAfter.toISOString(), notAfter.toISOString());
    assert.deepEqual(new X509Certificate(expired.certPem).keyUsage, ['1.3.6.1.5.5.7.3.1']);
    // Dates from 2050 use GeneralizedTime (RFC 5280 §4.1.2.5).
    const far = issueLeaf({ ca: root, notBefore: new Date('2051-06-01T00:00:00Z'), notAfter: new Date('2052-06-01T00:00:00Z') });
    assert.equal(far.notAfter.toISOString(), '2052-06-01T00:00:00.000Z');
    assert.throws(() => issueLeaf({ ca: root, notBefore, notAfter: notBefore }), (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT');
  });

  it('defaults a leaf to 24 hours and every certificate gets a distinct fingerprint', () => {
    const a = issueLeaf({ ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/b' });
    const b = issueLeaf({ ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/b' });
    assert.notEqual(a.fingerprint256, b.fingerprint256);
    const hours = (a.notAfter.getTime() - a.notBefore.getTime()) / 3_600_000;
    assert.equal(hours, 24);
  });

  it('refuses a leaf as issuer and an invalid trust domain', () => {
    const leaf = issueLeaf({ ca: root, spiffeId: 'spiffe://example.org/ns/a/sa/b' });
    assert.throws(() => issueLeaf({ ca: leaf }), /must be issued by a CA/);
    assert.throws(() => createCa({ parent: leaf }), /must be a CA/);
    assert.throws(() => createCa({ trustDomain: 'Bad Domain' }), /invalid SPIFFE trust domain/);
  });

  it('chains verify in a real TLS 1.3 handshake (leaf + intermediate presented, root trusted)', async () => {
    const server = issueLeaf({ ca: intermediate, spiffeId: 'spiffe://example.org/ns/w/sa/gw', dnsNames: ['localhost'] });
    const client = issueLeaf({ ca: intermediate, spiffeId: 'spiffe://example.org/ns/a/sa/client' });
    const srv = tls.createServer({ cert: server.chainPem, key: server.keyPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
    srv.on('secureConnection', (s) => s.end('ok'));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const sock = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, servername: 'localhost', cert: client.chainPem, key: client.keyPem, ca: root.certPem });
      await once(sock, 'secureConnect');
      assert.equal(sock.authorized, true);
      assert.equal(sock.getProtocol(), 'TLSv1.3');
      const [data] = (await once(sock, 'data')) as [Buffer];
      assert.equal(data.toString(), 'ok');
      sock.destroy();
    } finally {
      srv.close();
    }
  });

  describe('files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'waygate-ca-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('writes and reads back a CA with a 0600 key', () => {
      const paths = writeCaFiles(dir, root);
      assert.equal(statSync(paths.key).mode & 0o777, 0o600);
      const back = readCaFiles(dir);
      assert.equal(back.certPem, root.certPem);
      assert.equal(back.keyPem, root.keyPem);
      assert.equal(back.spiffeId, 'spiffe://example.org');
      assert.equal(back.fingerprint256, root.fingerprint256);
      assert.equal(back.isCa, true);
      // The read-back CA can issue.
      const leaf = issueLeaf({ ca: back, spiffeId: 'spiffe://example.org/ns/a/sa/b' });
      assert.equal(new X509Certificate(leaf.certPem).verify(new X509Certificate(root.certPem).publicKey), true);
    });

    it('names the file when the CA is missing or its key does not match', () => {
      assert.throws(() => readCaFiles(join(dir, 'nope')), (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT' && /ca\.crt: not found/.test(e.message));
      const other = createCa({});
      const bad = join(dir, 'bad');
      writeCaFiles(bad, root);
      writeFileSync(join(bad, 'ca.key'), other.keyPem);
      assert.throws(() => readCaFiles(bad), /ca\.crt: the private key does not match the certificate/);
    });
  });
});
