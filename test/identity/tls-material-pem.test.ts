import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tlsMaterialFromPem } from '../../src/identity/tls-material.ts';
import { WaygateError } from '../../src/errors.ts';
import { GATEWAY_SPIFFE_ID, testPki } from '../helpers/pki.ts';

const pki = testPki();

describe('tlsMaterialFromPem', () => {
  it('builds the same material as files would give', () => {
    const m = tlsMaterialFromPem({ cert: pki.serverCert.chainPem, key: pki.serverCert.keyPem, ca: pki.trustBundlePem, origin: 'istiod at x:15012' });
    assert.equal(m.fingerprint, pki.serverCert.fingerprint256);
    assert.equal(m.cert, pki.serverCert.chainPem);
    assert.equal(m.ca, pki.root.certPem);
    assert.equal(m.notAfter.getTime(), pki.serverCert.notAfter.getTime());
  });

  it('refuses a key that does not match and a chain outside the trust bundle, naming the origin', () => {
    const other = pki.clientFor('spiffe://cluster.local/ns/a/sa/b');
    assert.throws(
      () => tlsMaterialFromPem({ cert: pki.serverCert.chainPem, key: other.keyPem, ca: pki.trustBundlePem, origin: 'istiod at x:15012' }),
      (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT' && /istiod at x:15012 \(private key\): the private key does not match/.test(e.message),
    );
    const foreign = pki.clientFor(GATEWAY_SPIFFE_ID, { issuer: 'foreign' });
    assert.throws(
      () => tlsMaterialFromPem({ cert: foreign.chainPem, key: foreign.keyPem, ca: pki.trustBundlePem, origin: 'istiod at x:15012' }),
      (e: unknown) => e instanceof WaygateError && /does not chain to any CA in istiod at x:15012 \(trust bundle\)/.test(e.message),
    );
  });
});
