import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chainsToAnchor, loadTrustBundle, trustBundleFromPem } from '../../src/identity/trust-bundle.ts';
import { WaygateError } from '../../src/errors.ts';
import { testPki } from '../helpers/pki.ts';

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), 'waygate-bundle-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('loadTrustBundle', () => {
  it('loads one file with several CAs, and several files, deduplicating', () => {
    const both = file('both.pem', pki.root.certPem + pki.foreignRoot.certPem);
    const one = file('one.pem', pki.root.certPem);
    const b = loadTrustBundle([both, one]);
    assert.equal(b.certificates.length, 2);
    assert.deepEqual(b.files, [both, one]);
    assert.deepEqual(
      b.certificates.map((c) => c.fingerprint256),
      [pki.root.fingerprint256, pki.foreignRoot.fingerprint256],
    );
    assert.equal(trustBundleFromPem(b.pem).certificates.length, 2, 'the joined PEM parses back');
    assert.equal(loadTrustBundle(one).certificates.length, 1, 'a single path string works too');
  });

  it('skips non-certificate PEM blocks next to certificates', () => {
    const p = file('with-key.pem', pki.root.certPem + pki.serverCert.keyPem);
    assert.equal(loadTrustBundle(p).certificates.length, 1);
  });

  const broken = pki.root.certPem.replace(/\n[A-Za-z0-9+/]{10}/, '\nAAAAAAAAAA');
  const errorCases: Array<{ name: string; files: () => string[]; message: RegExp }> = [
    { name: 'missing file', files: () => [join(dir, 'absent.pem')], message: /absent\.pem: cannot read the trust bundle: ENOENT/ },
    { name: 'empty file', files: () => [file('empty.pem', '')], message: /empty\.pem: no PEM certificate found/ },
    { name: 'garbage', files: () => [file('garbage.pem', 'hello world\n')], message: /garbage\.pem: no PEM certificate found/ },
    {
      name: 'a corrupt second certificate',
      files: () => [file('corrupt.pem', pki.root.certPem + broken)],
      message: /corrupt\.pem: certificate #2 does not parse/,
    },
    {
      name: 'a workload certificate instead of a CA',
      files: () => [file('leaf.pem', pki.serverCert.certPem)],
      message: /leaf\.pem: certificate #1 \(.*\) is not a CA certificate/,
    },
    { name: 'the second file is the broken one', files: () => [file('ok.pem', pki.root.certPem), file('bad2.pem', 'x')], message: /bad2\.pem: no PEM/ },
    { name: 'no file', files: () => [], message: /no trust bundle file given/ },
  ];
  for (const c of errorCases) {
    it(`fails with WG_CERT naming the file: ${c.name}`, () => {
      assert.throws(
        () => loadTrustBundle(c.files()),
        (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT' && c.message.test(e.message),
      );
    });
  }
});

describe('chainsToAnchor', () => {
  const x = (pem: string): X509Certificate => new X509Certificate(pem);
  const root = x(pki.root.certPem);
  const foreign = x(pki.foreignRoot.certPem);
  const intermediate = x(pki.intermediate.certPem);
  const leaf = x(pki.serverCert.certPem);
  const cases = [
    { name: 'leaf + intermediate to the root', chain: [leaf, intermediate], anchors: [root], ok: true },
    { name: 'leaf without its intermediate', chain: [leaf], anchors: [root], ok: false },
    { name: 'the intermediate is itself an anchor', chain: [leaf], anchors: [intermediate], ok: true },
    { name: 'a foreign anchor', chain: [leaf, intermediate], anchors: [foreign], ok: false },
    { name: 'the anchor among several', chain: [leaf, intermediate], anchors: [foreign, root], ok: true },
    { name: 'a root is its own anchor', chain: [root], anchors: [root], ok: true },
    { name: 'a same-named foreign root is not the root', chain: [x(pki.clientFor('spiffe://cluster.local/ns/a/sa/b', { issuer: 'foreign' }).certPem)], anchors: [root], ok: false },
    { name: 'empty chain', chain: [], anchors: [root], ok: false },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(chainsToAnchor(c.chain, c.anchors), c.ok));
  }
});
