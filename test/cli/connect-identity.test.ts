/**
 * `waygate connect --identity` (src/gateway/dev-pki.ts ensureDevIdentity): `ns/sa` or a SPIFFE
 * ID in the dev CA's trust domain, issued into the dev PKI on first use, reused while good,
 * issued again when it expires or the CA is replaced; the files are those `waygate certs issue`
 * writes. Certificates from the project's own dev CA code.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { devIdentitySpiffeId, ensureDevIdentity, ensureDevPki } from '../../src/gateway/dev-pki.ts';
import { createCa, writeCaFiles } from '../../src/identity/dev-ca.ts';

describe('ensureDevIdentity', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-identity-'));
    ensureDevPki(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('ns/sa and a SPIFFE ID name the same identity; anything else is refused with the expected form', () => {
    assert.equal(devIdentitySpiffeId('prod/frontend', 'cluster.local'), 'spiffe://cluster.local/ns/prod/sa/frontend');
    assert.equal(devIdentitySpiffeId('spiffe://cluster.local/ns/prod/sa/frontend', 'cluster.local'), 'spiffe://cluster.local/ns/prod/sa/frontend');
    assert.throws(() => devIdentitySpiffeId('frontend', 'cluster.local'), /expected <namespace>\/<service-account> \(e\.g\. prod\/frontend\) or a SPIFFE ID/);
    assert.throws(() => devIdentitySpiffeId('prod/Front end', 'cluster.local'), /is not a valid workload SPIFFE ID/);
    assert.throws(() => devIdentitySpiffeId('spiffe://example.org/ns/a/sa/b', 'cluster.local'), /trust domain "example\.org", but the dev CA issues for "cluster\.local"/);
  });

  test('issued on first use into <ns>-<sa>.crt/.key (key 0600), reused after', () => {
    const first = ensureDevIdentity(dir, 'prod/frontend');
    assert.equal(first.issued, true);
    assert.equal(first.certFile, path.join(dir, 'prod-frontend.crt'));
    assert.equal(first.keyFile, path.join(dir, 'prod-frontend.key'));
    assert.equal(statSync(first.keyFile).mode & 0o777, 0o600);
    const cert = new X509Certificate(readFileSync(first.certFile));
    assert.equal(cert.subjectAltName, 'URI:spiffe://cluster.local/ns/prod/sa/frontend');
    assert.ok(cert.verify(new X509Certificate(readFileSync(path.join(dir, 'root.crt'))).publicKey));
    const again = ensureDevIdentity(dir, 'spiffe://cluster.local/ns/prod/sa/frontend');
    assert.equal(again.issued, false);
    assert.equal(readFileSync(again.certFile, 'utf8'), readFileSync(first.certFile, 'utf8'));
  });

  test('issued again when close to expiry, and when the CA was replaced', () => {
    ensureDevIdentity(dir, 'prod/api');
    assert.equal(ensureDevIdentity(dir, 'prod/api', Date.now() + 40 * 24 * 3_600_000).issued, true, 'expiring');
    assert.equal(ensureDevIdentity(dir, 'prod/api').issued, false);
    writeCaFiles(dir, createCa({ trustDomain: 'cluster.local' }));
    assert.equal(ensureDevIdentity(dir, 'prod/api').issued, true, 'CA replaced');
  });

  test('no dev CA: WG_CERT naming the file to create', () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'waygate-identity-empty-'));
    try {
      assert.throws(() => ensureDevIdentity(empty, 'prod/frontend'), (err: Error & { code?: string }) => err.code === 'WG_CERT' && /ca\.crt: not found/.test(err.message));
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
