import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTlsMaterial, TlsMaterialWatcher, type TlsMaterial } from '../../src/identity/tls-material.ts';
import { WaygateError } from '../../src/errors.ts';
import { GATEWAY_SPIFFE_ID, testPki, writeTlsFiles } from '../helpers/pki.ts';

const pki = testPki();
const base = mkdtempSync(join(tmpdir(), 'waygate-tls-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => {
  const d = join(base, `d${++n}`);
  mkdirSync(d);
  return d;
};

/** Replaces a file atomically, the way editors and `kubectl cp` do: write aside, rename over. */
function replace(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

describe('loadTlsMaterial', () => {
  it('loads a chain, its key and the trust bundle', () => {
    const f = writeTlsFiles(freshDir(), pki.serverCert, pki.trustBundlePem);
    const m = loadTlsMaterial({ certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] });
    assert.equal(m.fingerprint, pki.serverCert.fingerprint256);
    assert.equal(m.notAfter.getTime(), pki.serverCert.notAfter.getTime());
    assert.equal(m.cert, pki.serverCert.chainPem);
    assert.equal(m.key, pki.serverCert.keyPem);
    assert.equal(m.ca, pki.root.certPem);
    assert.ok(m.loadedAt instanceof Date);
    assert.match(m.contentHash, /^[0-9a-f]{64}$/);
  });

  const cases: Array<{ name: string; setup: (d: string) => { certFile: string; keyFile: string; trustBundleFiles: string[] }; message: RegExp }> = [
    {
      name: 'key does not match the certificate',
      setup: (d) => {
        const f = writeTlsFiles(d, pki.serverCert, pki.trustBundlePem);
        writeFileSync(f.keyFile, pki.clientFor('spiffe://cluster.local/ns/a/sa/b').keyPem);
        return { certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] };
      },
      message: /tls\.key: the private key does not match the certificate in .*tls\.crt/,
    },
    {
      name: 'certificate from an untrusted CA',
      setup: (d) => {
        const f = writeTlsFiles(d, pki.clientFor(GATEWAY_SPIFFE_ID, { issuer: 'foreign' }), pki.trustBundlePem);
        return { certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] };
      },
      message: /tls\.crt: the certificate does not chain to any CA in .*tls-ca\.crt/,
    },
    {
      name: 'intermediate missing from the cert file',
      setup: (d) => {
        const f = writeTlsFiles(d, pki.serverCert, pki.trustBundlePem);
        writeFileSync(f.certFile, pki.serverCert.certPem);
        return { certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] };
      },
      message: /does not chain .*missing intermediate/,
    },
    {
      name: 'key file is not a key',
      setup: (d) => {
        const f = writeTlsFiles(d, pki.serverCert, pki.trustBundlePem);
        writeFileSync(f.keyFile, 'nope');
        return { certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] };
      },
      message: /tls\.key: not a PEM private key/,
    },
    {
      name: 'cert file missing',
      setup: (d) => ({ certFile: join(d, 'none.crt'), keyFile: join(d, 'none.key'), trustBundleFiles: [join(d, 'ca.crt')] }),
      message: /none\.crt: cannot read: ENOENT/,
    },
  ];
  for (const c of cases) {
    it(`refuses: ${c.name}`, () => {
      assert.throws(
        () => loadTlsMaterial(c.setup(freshDir())),
        (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT' && c.message.test(e.message),
      );
    });
  }
});

describe('TlsMaterialWatcher', () => {
  // The watcher holds no ref'd handle on purpose (it must never keep a stopping gateway alive);
  // in a test nothing else does, so keep the event loop up while we await its events.
  let keepAlive: NodeJS.Timeout | undefined;
  before(() => {
    keepAlive = setInterval(() => {}, 60_000);
  });
  after(() => clearInterval(keepAlive));

  it('reloads on file replace, and keeps the old material when the new files are broken', async () => {
    const d = freshDir();
    const f = writeTlsFiles(d, pki.serverCert, pki.trustBundlePem);
    const w = new TlsMaterialWatcher({ certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile], debounceMs: 20 });
    try {
      assert.equal(w.current.fingerprint, pki.serverCert.fingerprint256);
      const errors: WaygateError[] = [];
      w.on('error', (e: WaygateError) => errors.push(e));

      // Rotation: new key and certificate. Intermediate states (new cert, old key) may report an
      // error on the way; the final state must load.
      const next = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID, dnsNames: ['localhost'] });
      const updated = once(w, 'update') as Promise<[TlsMaterial]>;
      replace(f.keyFile, next.keyPem);
      replace(f.certFile, next.chainPem);
      let [m] = await updated;
      while (m.fingerprint !== next.fingerprint256) [m] = (await once(w, 'update')) as [TlsMaterial];
      assert.equal(w.current.fingerprint, next.fingerprint256);
      assert.equal(w.lastError, undefined);

      // A broken certificate: an error, the rotated material stays in force.
      const failed = once(w, 'error') as Promise<[WaygateError]>;
      replace(f.certFile, 'garbage\n');
      const [err] = await failed;
      assert.equal(err.code, 'WG_CERT');
      assert.match(err.message, /tls\.crt: no PEM certificate found/);
      assert.equal(w.current.fingerprint, next.fingerprint256);
      assert.equal(w.lastError, err);

      // Fixed again: loads.
      const fixed = once(w, 'update') as Promise<[TlsMaterial]>;
      replace(f.certFile, pki.serverCert.chainPem + '\n');
      replace(f.keyFile, pki.serverCert.keyPem);
      let [m2] = await fixed;
      while (m2.fingerprint !== pki.serverCert.fingerprint256) [m2] = (await once(w, 'update')) as [TlsMaterial];
      assert.equal(w.current.fingerprint, pki.serverCert.fingerprint256);
      assert.ok(errors.length >= 1);
    } finally {
      w.close();
    }
  });

  it('follows a Kubernetes Secret volume update (..data symlink swap)', async () => {
    const mount = freshDir();
    // The layout the kubelet's AtomicWriter builds: ..<timestamp>/files, ..data -> ..<timestamp>,
    // and top-level symlinks name -> ..data/name.
    const v1 = join(mount, '..2026_11_26_13_00_00.1');
    writeTlsFiles(v1, pki.serverCert, pki.trustBundlePem);
    symlinkSync('..2026_11_26_13_00_00.1', join(mount, '..data'));
    for (const name of ['tls.crt', 'tls.key', 'tls-ca.crt']) symlinkSync(`..data/${name}`, join(mount, name));
    const w = new TlsMaterialWatcher({
      certFile: join(mount, 'tls.crt'),
      keyFile: join(mount, 'tls.key'),
      trustBundleFiles: [join(mount, 'tls-ca.crt')],
      debounceMs: 20,
    });
    try {
      assert.equal(w.current.fingerprint, pki.serverCert.fingerprint256);
      const next = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID });
      const updated = once(w, 'update') as Promise<[TlsMaterial]>;
      const v2 = join(mount, '..2026_11_26_14_00_00.2');
      writeTlsFiles(v2, next, pki.trustBundlePem);
      symlinkSync('..2026_11_26_14_00_00.2', join(mount, '..data_tmp'));
      renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
      rmSync(v1, { recursive: true });
      const [m] = await updated;
      assert.equal(m.fingerprint, next.fingerprint256);
      assert.equal(w.current.fingerprint, next.fingerprint256);
    } finally {
      w.close();
    }
  });

  it('check() reloads on demand and reports nothing when the content did not change', async () => {
    const f = writeTlsFiles(freshDir(), pki.serverCert, pki.trustBundlePem);
    const w = new TlsMaterialWatcher({ certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile], pollIntervalMs: 0 });
    try {
      let updates = 0;
      w.on('update', () => updates++);
      assert.equal(await w.check(), false);
      // Same bytes rewritten: the hash is unchanged, no reload.
      writeFileSync(f.certFile, pki.serverCert.chainPem);
      assert.equal(await w.check(), false);
      const next = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID });
      writeFileSync(f.certFile, next.chainPem);
      writeFileSync(f.keyFile, next.keyPem);
      assert.equal(await w.check(), true);
      assert.equal(w.current.fingerprint, next.fingerprint256);
      assert.ok(updates >= 1);
      w.close();
      assert.equal(await w.check(), false, 'closed watchers do nothing');
    } finally {
      w.close();
    }
  });

  it('throws WG_CERT at construction when the initial material is invalid', () => {
    const f = writeTlsFiles(freshDir(), pki.serverCert, pki.foreignRoot.certPem);
    assert.throws(
      () => new TlsMaterialWatcher({ certFile: f.certFile, keyFile: f.keyFile, trustBundleFiles: [f.caFile] }),
      (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT',
    );
  });
});
