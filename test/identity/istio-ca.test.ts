/**
 * The certificate source backed by istiod's CA (src/identity/istio-ca/), against a real local gRPC
 * server over TLS (test/helpers/fake-istio-ca.ts): the first certificate, what is refused and why,
 * renewal at half the lifetime, retries, mesh root rotation, listeners that throw, close().
 *
 * The tests ask for ECDSA P-256 keys (istio-agent's ECC_SIGNATURE_ALGORITHM=ECDSA): generating
 * one costs well under a millisecond of CPU, an RSA 2048 key 100-700 ms. The first test proves
 * the default RSA path end to end (CSR, issue, verification, mutual TLS).
 */
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { status as grpcStatus } from '@grpc/grpc-js';
import forge from 'node-forge';
import pino from 'pino';
import { WaygateError } from '../../src/errors.ts';
import { uriSansFromDer } from '../../src/identity/peer-identity.ts';
import { startIstioCaSource, type IstioCaSource, type IstioCaSourceOptions } from '../../src/identity/istio-ca/source.ts';
import type { TlsMaterial } from '../../src/identity/tls-material.ts';
import { parsePemCertificates } from '../../src/identity/trust-bundle.ts';
import { GATEWAY_TOKEN, parseCsr, startFakeIstioCa, type CallRecord, type FakeIstioCa } from '../helpers/fake-istio-ca.ts';
import { GATEWAY_SPIFFE_ID, spiffe, testPki } from '../helpers/pki.ts';
import { within } from '../helpers/wait.ts';
import { TIMER_MAX_MS } from '../../src/util/long-timer.ts';

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), 'waygate-istio-ca-'));
const rootFile = join(dir, 'root-cert.pem');
writeFileSync(rootFile, pki.trustBundlePem);
let files = 0;

/** A token file of its own per test (tests rewrite theirs). */
function tokenFile(token: string): string {
  const f = join(dir, `token-${++files}`);
  writeFileSync(f, `${token}\n`);
  return f;
}

function options(ca: FakeIstioCa, extra: Partial<IstioCaSourceOptions> = {}): IstioCaSourceOptions {
  return {
    address: ca.address,
    serverName: ca.serverName,
    rootCertFiles: [rootFile],
    tokenFile: tokenFile(GATEWAY_TOKEN),
    clusterId: 'Kubernetes',
    identity: GATEWAY_SPIFFE_ID,
    initialBackoffMs: 10,
    maxBackoffMs: 40,
    keyAlgorithm: 'ECDSA',
    ...extra,
  };
}

function sanOf(m: TlsMaterial): string | undefined {
  return uriSansFromDer(m.leaf.raw)[0];
}

/** Rejection with WG_CA whose message matches every pattern. */
async function rejectsWithCa(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof WaygateError, `not a WaygateError: ${String(err)}`);
    assert.equal(err.code, 'WG_CA');
    for (const re of patterns) assert.match(err.message, re);
    return true;
  });
}

/** Serves `m` on a mutual-TLS listener and connects to it with `m`: both ends verify the chain to the mesh root. */
async function assertServesMutualTls(m: TlsMaterial): Promise<void> {
  const server = tls.createServer({ cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (s) => s.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const client = tls.connect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      cert: m.cert,
      key: m.key,
      ca: m.ca,
      checkServerIdentity: () => undefined, // SPIFFE peers are checked by URI SAN, not host name
    });
    const [data] = await within(once(client, 'data'), 'data over mutual TLS');
    assert.equal(String(data), 'ok');
    assert.equal(uriSansFromDer(client.getPeerX509Certificate()!.raw)[0], GATEWAY_SPIFFE_ID);
    client.destroy();
  } finally {
    server.close();
  }
}

/** Resolves with the next event `name` of `source` (not events.once, which rejects on 'error'). */
function next<T>(source: IstioCaSource, name: 'update' | 'error'): Promise<T> {
  return within(new Promise<T>((resolve) => source.once(name, resolve)), `'${name}' event`);
}

describe('istiod CA source', () => {
  let ca: FakeIstioCa;
  const sources: IstioCaSource[] = [];
  before(async () => {
    ca = await startFakeIstioCa();
  });
  after(async () => {
    for (const s of sources) s.close();
    await ca.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = async (opts: IstioCaSourceOptions): Promise<IstioCaSource> => {
    const s = await startIstioCaSource(opts);
    sources.push(s);
    return s;
  };

  it('issues the configured identity, chained to the mesh root, and sends the token and the cluster ID (RSA 2048, the default key); the material serves mutual TLS', async () => {
    const opts = options(ca, { keyAlgorithm: undefined }); // the source's default
    const before = ca.calls;
    const source = await start(opts);
    const m = source.current;
    assert.equal(ca.calls, before + 1);
    assert.equal(sanOf(m), GATEWAY_SPIFFE_ID);
    // Presented: the leaf and the intermediate, not the root; trusted: the mesh root.
    const presented = parsePemCertificates(m.cert, 'cert');
    assert.deepEqual(presented.map((c) => c.fingerprint256), [m.fingerprint, pki.intermediate.fingerprint256]);
    assert.equal(m.ca, pki.root.certPem);
    assert.ok(m.leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(m.key)));
    // What istiod saw: istio-agent's metadata and request.
    const seen = ca.last!;
    assert.equal(seen.metadata['authorization'], `Bearer ${GATEWAY_TOKEN}`);
    assert.equal(seen.metadata['clusterid'], 'Kubernetes');
    assert.equal(seen.validitySeconds, 86_400);
    const csr = forge.pki.certificationRequestFromPem(seen.csr);
    assert.ok(csr.verify());
    assert.equal((csr.publicKey as forge.pki.rsa.PublicKey).n.bitLength(), 2048);
    assert.equal(parseCsr(seen.csr).signatureOid, '1.2.840.113549.1.1.11', 'sha256WithRSAEncryption');
    assert.equal(m.leaf.publicKey.asymmetricKeyType, 'rsa');
    const ext = (csr.getAttribute({ name: 'extensionRequest' }) as unknown as { extensions: Array<{ name: string; critical: boolean; altNames: Array<{ type: number; value: string }> }> }).extensions;
    assert.deepEqual(
      ext.map((e) => [e.name, e.critical, e.altNames]),
      [['subjectAltName', true, [{ type: 6, value: GATEWAY_SPIFFE_ID }]]],
    );
    // Renewal due at half the lifetime (±1%).
    const st = source.status();
    assert.equal(st.identity, GATEWAY_SPIFFE_ID);
    assert.equal(st.keyAlgorithm, 'RSA');
    assert.equal(st.notAfter.getTime(), m.notAfter.getTime());
    assert.equal(st.consecutiveFailures, 0);
    assert.equal(st.lastError, undefined);
    assert.equal(st.issuedCount, 1);
    const life = st.notAfter.getTime() - st.notBefore.getTime();
    const at = st.nextAttemptAt!.getTime() - st.notBefore.getTime();
    assert.ok(at >= life * 0.49 && at <= life * 0.51, `renewal at ${at} ms of ${life} ms`);
    // An RSA key under the EC mesh CA, on both ends of a TLS 1.3 handshake.
    await assertServesMutualTls(m);
  });

  it('keyAlgorithm ECDSA: a P-256 key and an ecdsa-with-SHA256 CSR; the leaf certifies that key and serves mutual TLS', async () => {
    const source = await start(options(ca, { keyAlgorithm: 'ECDSA' }));
    const m = source.current;
    const csr = parseCsr(ca.last!.csr); // parsed and its signature verified
    assert.equal(csr.signatureOid, '1.2.840.10045.4.3.2', 'ecdsa-with-SHA256');
    assert.equal(csr.publicKey.asymmetricKeyType, 'ec');
    assert.equal(csr.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(csr.extensions, [{ id: '2.5.29.17', critical: true, altNames: [{ type: 6, value: GATEWAY_SPIFFE_ID }] }]);
    assert.ok(m.leaf.publicKey.equals(csr.publicKey), 'the leaf carries the key of the CSR');
    assert.ok(m.leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(m.key)));
    assert.equal(sanOf(m), GATEWAY_SPIFFE_ID);
    assert.equal(source.status().keyAlgorithm, 'ECDSA');
    await assertServesMutualTls(m);
  });

  it('a refused token: WG_CA naming the token file and UNAUTHENTICATED', async () => {
    const opts = options(ca, { tokenFile: tokenFile('not-a-token') });
    await rejectsWithCa(startIstioCaSource(opts), new RegExp(`refused the token in ${opts.tokenFile}`), /UNAUTHENTICATED/, new RegExp(ca.address));
  });

  it('an unknown cluster ID is refused as istiod does (UNAUTHENTICATED)', async () => {
    await rejectsWithCa(startIstioCaSource(options(ca, { clusterId: 'other-cluster' })), /UNAUTHENTICATED/, /"other-cluster"/);
    assert.equal(ca.last!.metadata['clusterid'], 'other-cluster');
  });

  it('a missing or empty token file: WG_CA naming it, and nothing sent', async () => {
    const before = ca.calls;
    const missing = join(dir, 'no-such-token');
    await rejectsWithCa(startIstioCaSource(options(ca, { tokenFile: missing })), new RegExp(`${missing}: cannot read`), /istio-ca/);
    await rejectsWithCa(startIstioCaSource(options(ca, { tokenFile: tokenFile('') })), /token for istiod is empty/);
    assert.equal(ca.calls, before);
  });

  it('another identity than the configured one is refused, saying which and why', async () => {
    ca.tokens.set('token-of-other', spiffe('other', 'shop'));
    const opts = options(ca, { tokenFile: tokenFile('token-of-other') });
    await rejectsWithCa(
      startIstioCaSource(opts),
      /issued spiffe:\/\/cluster\.local\/ns\/shop\/sa\/other, not the configured identity spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/gateway/,
      new RegExp(`token in ${opts.tokenFile}`),
      /service account differs/,
    );
  });

  it('another trust domain for the same service account: the message points at trustDomains and tls.istioCa.identity', async () => {
    const issued = spiffe('gateway', 'waygate', 'mesh.example');
    ca.tokens.set('token-of-other-domain', issued);
    const opts = options(ca, { tokenFile: tokenFile('token-of-other-domain') });
    const err = await startIstioCaSource(opts).then(
      () => assert.fail('accepted another trust domain'),
      (e: unknown) => e as WaygateError,
    );
    assert.equal(err.code, 'WG_CA');
    assert.match(err.message, /issued spiffe:\/\/mesh\.example\/ns\/waygate\/sa\/gateway, not the configured identity spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/gateway/);
    assert.match(err.message, /istiod's trust domain is "mesh\.example", not "cluster\.local"/);
    assert.match(err.message, /set trustDomains .* or tls\.istioCa\.identity to spiffe:\/\/mesh\.example\/ns\/waygate\/sa\/gateway/);
    assert.doesNotMatch(err.message, /service account differs/);
  });

  const misbehaving: Array<[Parameters<FakeIstioCa['misbehaveNext']>[0], RegExp]> = [
    ['expired', /expired at .*refused/],
    ['not-yet-valid', /not valid before .*refused/],
    ['other-key', /certificate for another key/],
    ['foreign-root', /does not chain to the mesh root in .*root-cert\.pem/],
    ['expired-intermediate', /the CA certificate .*expired test intermediate.*\(certificate #2 of the chain\) that expired at .*refused; istiod's signing CA/],
    ['non-ca-intermediate', /returned .*\(certificate #3 of the chain\) as an intermediate, but it is not a CA certificate.*refused/],
    ['no-client-auth', /with an extended key usage without clientAuth: refused.*HBONE/],
  ];
  for (const [kind, message] of misbehaving) {
    it(`a certificate that is ${kind} is refused`, async () => {
      ca.misbehaveNext(kind);
      await rejectsWithCa(startIstioCaSource(options(ca)), message);
      assert.equal(ca.last!.misbehaviour, kind);
    });
  }

  it('istiod whose serving certificate does not chain to the mesh root is refused before anything is sent', async () => {
    const rogue = await startFakeIstioCa({ serving: 'foreign' });
    try {
      await rejectsWithCa(startIstioCaSource(options(rogue)), new RegExp(`cannot reach istiod at ${rogue.address}`), /UNAVAILABLE/, /must chain to the mesh root in .*root-cert\.pem/);
      assert.equal(rogue.calls, 0);
    } finally {
      await rogue.close();
    }
  });

  it('istiod presenting a certificate for another name is refused', async () => {
    const before = ca.calls;
    await rejectsWithCa(startIstioCaSource(options(ca, { serverName: 'istiod.elsewhere.svc' })), /UNAVAILABLE/, /istiod\.elsewhere\.svc/);
    assert.equal(ca.calls, before);
  });

  it('an unreachable address: the error names it', async () => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const address = `127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise((r) => probe.close(r));
    await rejectsWithCa(startIstioCaSource(options(ca, { address })), new RegExp(`cannot reach istiod at ${address}`), /ECONNREFUSED/, /check the address/);
  });

  it('renews at half the lifetime, re-reading the token file for every request', async () => {
    ca.tokens.set('rotated-token', GATEWAY_SPIFFE_ID);
    ca.lifetimeMs = 2_000;
    try {
      const opts = options(ca);
      const source = await start(opts);
      const first = source.current;
      const updated = next<TlsMaterial>(source, 'update');
      writeFileSync(opts.tokenFile, 'rotated-token\n'); // the kubelet rotating the projected token
      const second = await updated;
      assert.equal(ca.last!.metadata['authorization'], 'Bearer rotated-token');
      assert.notEqual(second.fingerprint, first.fingerprint);
      assert.equal(sanOf(second), GATEWAY_SPIFFE_ID);
      assert.equal(source.current, second);
      const third = await next<TlsMaterial>(source, 'update');
      assert.notEqual(third.fingerprint, second.fingerprint);
      const st = source.status();
      assert.equal(st.issuedCount, 3);
      assert.equal(st.fingerprint, third.fingerprint);
      assert.ok(st.nextAttemptAt!.getTime() < third.notAfter.getTime());
      source.close();
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  it('a lifetime whose half exceeds setTimeout\'s 2^31-1 ms (80 days) is waited out, not renewed at once', async () => {
    const DAY_MS = 86_400_000;
    ca.tokens.set('long-lived-token', GATEWAY_SPIFFE_ID);
    const seen: string[] = [];
    const onCall = (r: CallRecord): void => { seen.push(r.metadata['authorization'] ?? ''); };
    ca.on('call', onCall);
    try {
      const long = await start(options(ca, { tokenFile: tokenFile('long-lived-token'), requestedTtlMs: 80 * DAY_MS }));
      const lifetimeMs = long.current.notAfter.getTime() - new Date(long.current.leaf.validFrom).getTime();
      assert.ok(lifetimeMs > 2 * TIMER_MAX_MS, 'the fake issued what was asked');
      assert.ok(long.status().nextAttemptAt!.getTime() - Date.now() > 39 * DAY_MS, 'the renewal is due at half the lifetime');
      // The clock: another source's renewal, at least a second later. A renewal timer that fired
      // at once (Node does so above 2^31-1 ms) would have asked istiod again long before.
      ca.lifetimeMs = 2_000;
      const short = await start(options(ca));
      await next<TlsMaterial>(short, 'update');
      assert.equal(seen.filter((a) => a === 'Bearer long-lived-token').length, 1, 'one request: the first');
      assert.ok(long.status().nextAttemptAt!.getTime() - Date.now() > 39 * DAY_MS);
      short.close();
      long.close();
    } finally {
      ca.off('call', onCall);
      ca.lifetimeMs = undefined;
    }
  });

  it('reads the mesh root files for every request (a root rotation rewrites them)', async () => {
    ca.lifetimeMs = 2_000;
    const roots = join(dir, 'rotating-root.pem');
    writeFileSync(roots, pki.trustBundlePem);
    try {
      const source = await start(options(ca, { rootCertFiles: [roots] }));
      assert.equal(source.current.ca, pki.root.certPem);
      // Only a root istiod does not chain to: the next renewal cannot verify istiod.
      writeFileSync(roots, pki.foreignRoot.certPem);
      const err = await next<WaygateError>(source, 'error');
      assert.match(err.message, /must chain to the mesh root in .*rotating-root\.pem/);
      // Both roots, as during a rotation: renewed, and both served as trust anchors.
      writeFileSync(roots, pki.trustBundlePem + pki.foreignRoot.certPem);
      const renewed = await next<TlsMaterial>(source, 'update');
      assert.equal(renewed.ca, pki.root.certPem + pki.foreignRoot.certPem);
      source.close();
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  it('a second root in the ConfigMap (..data swap) is served at once with the certificate in force, without asking istiod', async () => {
    // The layout the kubelet's AtomicWriter builds for the istio-ca-root-cert ConfigMap volume.
    const mount = mkdtempSync(join(dir, 'root-volume-'));
    const version = (n: number, pem: string): string => {
      const v = `..2026_12_07_17_00_00.${n}`;
      mkdirSync(join(mount, v));
      writeFileSync(join(mount, v, 'root-cert.pem'), pem);
      return v;
    };
    symlinkSync(version(1, pki.trustBundlePem), join(mount, '..data'));
    symlinkSync('..data/root-cert.pem', join(mount, 'root-cert.pem'));
    const source = await start(options(ca, { rootCertFiles: [join(mount, 'root-cert.pem')], rootWatchDebounceMs: 20, rootPollIntervalMs: 0 }));
    const first = source.current;
    const due = source.status().nextAttemptAt;
    const calls = ca.calls;
    const updated = next<TlsMaterial>(source, 'update');
    symlinkSync(version(2, pki.trustBundlePem + pki.foreignRoot.certPem), join(mount, '..data_tmp'));
    renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    const m = await updated;
    assert.equal(ca.calls, calls, 'no request to istiod');
    assert.equal(m.ca, pki.root.certPem + pki.foreignRoot.certPem);
    assert.equal(m.fingerprint, first.fingerprint);
    assert.equal(m.cert, first.cert);
    assert.equal(m.key, first.key);
    assert.equal(source.current, m);
    const st = source.status();
    assert.equal(st.issuedCount, 1);
    assert.equal(st.nextAttemptAt, due, 'the renewal stays where it was');
    source.close();
  });

  it('a root the certificate in force does not chain to: renewed at once, not at half the lifetime', async () => {
    // istiod serving under the foreign root, so that it stays reachable once that root is the only one.
    const rogue = await startFakeIstioCa({ serving: 'foreign' });
    try {
      const roots = join(mkdtempSync(join(dir, 'root-swap-')), 'root-cert.pem');
      writeFileSync(roots, pki.trustBundlePem + pki.foreignRoot.certPem);
      const source = await start(options(rogue, { rootCertFiles: [roots], rootWatchDebounceMs: 20 }));
      const first = source.current;
      assert.ok(source.status().nextAttemptAt!.getTime() - Date.now() > 11 * 3_600_000, 'the renewal is due in about 12 h');
      rogue.misbehaveNext('foreign-root'); // the new CA signs under the new root
      const updated = next<TlsMaterial>(source, 'update');
      writeFileSync(roots, pki.foreignRoot.certPem);
      const m = await updated;
      assert.equal(rogue.calls, 2);
      assert.equal(rogue.last!.misbehaviour, 'foreign-root');
      assert.notEqual(m.fingerprint, first.fingerprint);
      assert.equal(m.ca, pki.foreignRoot.certPem);
      assert.ok(m.leaf.checkIssued(new X509Certificate(pki.foreignRoot.certPem)));
      assert.equal(source.status().issuedCount, 2);
      source.close();
    } finally {
      await rogue.close();
    }
  });

  it('a root file that cannot be parsed or read: error naming it, the material in force stays', async () => {
    const roots = join(mkdtempSync(join(dir, 'root-broken-')), 'root-cert.pem');
    writeFileSync(roots, pki.trustBundlePem);
    const source = await start(options(ca, { rootCertFiles: [roots], rootWatchDebounceMs: 20 }));
    const first = source.current;
    const calls = ca.calls;
    const garbled = next<WaygateError>(source, 'error');
    writeFileSync(roots, 'not a certificate\n');
    const err = await garbled;
    assert.equal(err.code, 'WG_CA');
    assert.ok(err.message.includes(roots), err.message);
    assert.match(err.message, /no PEM certificate found/);
    assert.equal(source.current, first);
    assert.equal(source.status().lastError, err);
    const gone = next<WaygateError>(source, 'error');
    rmSync(roots);
    const err2 = await gone;
    assert.equal(err2.code, 'WG_CA');
    assert.match(err2.message, /cannot read/);
    assert.ok(err2.message.includes(roots), err2.message);
    assert.equal(source.current, first);
    // Readable again, with a second root: in force, the error cleared.
    const updated = next<TlsMaterial>(source, 'update');
    writeFileSync(roots, pki.trustBundlePem + pki.foreignRoot.certPem);
    assert.equal((await updated).ca, pki.root.certPem + pki.foreignRoot.certPem);
    assert.equal(source.status().lastError, undefined);
    assert.equal(ca.calls, calls);
    source.close();
  });

  it('listeners that throw are logged; the renewals go on and nothing rejects unhandled', async () => {
    ca.lifetimeMs = 2_000;
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => void rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    try {
      const source = await start(options(ca, { log }));
      const seen: string[] = [];
      // Registered first: EventEmitter stops calling the listeners of an event at the one that throws.
      const twoUpdates = new Promise<void>((resolve) => source.on('update', () => seen.push('update') === 3 && resolve()));
      source.on('error', () => void seen.push('error'));
      source.on('update', () => {
        throw new Error('a bug in an update listener');
      });
      source.on('error', () => {
        throw new Error('a bug in an error listener');
      });
      ca.failNext(1, grpcStatus.UNAVAILABLE);
      await within(twoUpdates, 'two renewals after a failure');
      assert.deepEqual(seen, ['error', 'update', 'update']);
      const threw = lines.filter((l) => /listener of the istiod certificate source threw/.test(String(l['msg'])));
      assert.deepEqual(threw.map((l) => [l['event'], l['err']]), [
        ['error', 'a bug in an error listener'],
        ['update', 'a bug in an update listener'],
        ['update', 'a bug in an update listener'],
      ]);
      assert.equal(source.status().issuedCount, 3);
      assert.ok(source.status().nextAttemptAt !== undefined, 'the next renewal is scheduled');
      source.close();
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
      ca.lifetimeMs = undefined;
    }
  });

  it('a failed renewal keeps the material in force, emits error, and retries with backoff until it succeeds', async () => {
    ca.lifetimeMs = 2_000;
    try {
      const source = await start(options(ca));
      const first = source.current;
      const base = ca.calls;
      ca.failNext(3, grpcStatus.UNAVAILABLE, 'istiod restarting');
      const errors: WaygateError[] = [];
      source.on('error', (err: WaygateError) => {
        errors.push(err);
        // Still serving the certificate in force.
        assert.equal(source.current, first);
        assert.equal(source.status().consecutiveFailures, errors.length);
      });
      const renewed = await next<TlsMaterial>(source, 'update');
      assert.equal(errors.length, 3);
      for (const e of errors) {
        assert.equal(e.code, 'WG_CA');
        assert.match(e.message, /UNAVAILABLE: istiod restarting/);
      }
      assert.equal(ca.calls, base + 4);
      assert.notEqual(renewed.fingerprint, first.fingerprint);
      const st = source.status();
      assert.equal(st.failureCount, 3);
      assert.equal(st.issuedCount, 2);
      assert.equal(st.consecutiveFailures, 0);
      assert.equal(st.lastError, undefined);
      assert.equal(source.lastError, undefined);
      source.close();
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  it('a renewal refused for its content (expired) is an error like any other, then retried', async () => {
    ca.lifetimeMs = 2_000;
    try {
      const source = await start(options(ca));
      ca.misbehaveNext('expired');
      const err = await next<WaygateError>(source, 'error');
      assert.equal(err.code, 'WG_CA');
      assert.match(err.message, /expired at/);
      assert.equal(source.status().lastError, err);
      await next<TlsMaterial>(source, 'update');
      source.close();
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  /**
   * After close(): a later event, another source's first certificate and its renewal (about a
   * second later, far beyond the closed source's 40 ms backoff), and the calls istiod saw meanwhile
   * must all be that witness's own.
   */
  async function assertNoCallsAfterClose(closed: IstioCaSource): Promise<void> {
    const late: string[] = [];
    closed.on('update', () => late.push('update'));
    closed.on('error', () => late.push('error'));
    const callsAtClose = ca.calls;
    const witness = await start(options(ca));
    await next<TlsMaterial>(witness, 'update');
    witness.close();
    assert.equal(ca.calls, callsAtClose + 2, 'only the witness asked istiod after close()');
    assert.deepEqual(late, []);
  }

  it('close() with a retry pending: the timer is cancelled, no more requests', async () => {
    ca.lifetimeMs = 2_000;
    try {
      const source = await start(options(ca));
      ca.failNext(1, grpcStatus.UNAVAILABLE);
      await next<WaygateError>(source, 'error');
      assert.ok(source.status().nextAttemptAt !== undefined);
      source.close();
      assert.equal(source.status().nextAttemptAt, undefined);
      assert.equal(source.status().closed, true);
      await assertNoCallsAfterClose(source);
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  it('close() with a retry in flight: the call is cancelled at the server, no more requests', async () => {
    ca.lifetimeMs = 2_000;
    try {
      const source = await start(options(ca));
      ca.failNext(1, grpcStatus.UNAVAILABLE);
      await next<WaygateError>(source, 'error');
      ca.holdNext();
      await within(once(ca, 'call'), 'the retried call');
      const cancelled = within(once(ca, 'cancelled'), 'the held call cancelled');
      source.close();
      await cancelled;
      await assertNoCallsAfterClose(source);
    } finally {
      ca.lifetimeMs = undefined;
    }
  });

  it('refuses options that cannot work, before asking', async () => {
    const before = ca.calls;
    await rejectsWithCa(startIstioCaSource(options(ca, { identity: 'gateway' })), /not a SPIFFE ID/);
    await rejectsWithCa(startIstioCaSource(options(ca, { rootCertFiles: [] })), /no mesh root file/);
    await rejectsWithCa(startIstioCaSource(options(ca, { address: 'istiod' })), /not host:port/);
    await rejectsWithCa(startIstioCaSource(options(ca, { rootCertFiles: [join(dir, 'missing-root.pem')] })), /missing-root\.pem/);
    await rejectsWithCa(startIstioCaSource(options(ca, { keyAlgorithm: 'DSA' as 'RSA' })), /keyAlgorithm must be RSA or ECDSA, got "DSA"/);
    assert.equal(ca.calls, before);
  });
});

/**
 * The gRPC client (src/identity/istio-ca/client.ts: @grpc/grpc-js, @grpc/proto-loader, protobufjs)
 * is loaded by the first request to istiod, never by importing the gateway's runtime: every
 * gateway process and every test that starts one imports the runtime, and only `tls.istioCa` uses
 * the client (some 120 package files to load). A fresh node process imports the built runtime
 * (dist/, as bin/waygate.js does) and lists the packages in require.cache; then it imports the
 * client, so that the same listing is shown to see gRPC once loaded (the check cannot pass by
 * seeing nothing).
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Prints the packages in require.cache after each import named on the command line. */
const PROBE = String.raw`
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const cache = createRequire(import.meta.url).cache;
/** The package of a file: the one or two (scoped) path segments after its last node_modules. */
const packageOf = (file) => {
  const parts = file.split(/[\\/]/);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0) return undefined;
  return parts[i + 1].startsWith('@') ? parts[i + 1] + '/' + parts[i + 2] : parts[i + 1];
};
const out = [];
for (const file of process.argv.slice(1)) {
  await import(pathToFileURL(file).href);
  out.push([...new Set(Object.keys(cache).map(packageOf).filter(Boolean))].sort());
}
process.stdout.write(JSON.stringify(out));
`;

describe('the istiod CA client is loaded lazily', () => {
  it('importing the gateway runtime loads no gRPC or protobuf package; the CA client does', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', PROBE, `${ROOT}dist/src/gateway/runtime.js`, `${ROOT}dist/src/identity/istio-ca/client.js`],
      { cwd: ROOT },
    );
    const [afterRuntime, afterClient] = JSON.parse(stdout) as [string[], string[]];
    const grpc = (pkgs: string[]): string[] => pkgs.filter((p) => /^@grpc\/|^protobufjs$|^@protobufjs\//.test(p));
    assert.ok(afterRuntime.includes('pino'), `the listing sees the runtime's packages: ${afterRuntime.join(', ')}`);
    assert.deepEqual(grpc(afterRuntime), [], 'loaded by importing dist/src/gateway/runtime.js');
    assert.ok(afterClient.includes('@grpc/grpc-js') && afterClient.includes('protobufjs'), `the listing sees the client's packages: ${afterClient.join(', ')}`);
  });
});

describe('the fake istiod reads CSRs as strictly as istiod (Go x509)', () => {
  /** The CSR with its signatureAlgorithm replaced: `oid`, then `params` (a DER NULL or nothing). */
  function relabel(pem: string, oid: string, params: 'null' | 'none'): string {
    const { asn1, pem: pemCodec } = forge;
    const der = forge.util.decode64(pem.replace(/-----[A-Z ]+-----|\s/g, ''));
    const csr = asn1.fromDer(der, { strict: true, decodeBitStrings: false } as unknown as boolean);
    const parts = csr.value as forge.asn1.Asn1[];
    parts[1] = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
      ...(params === 'null' ? [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '')] : []),
    ]);
    return pemCodec.encode({ type: 'CERTIFICATE REQUEST', body: asn1.toDer(csr).getBytes() });
  }
  const RSA_SHA256 = '1.2.840.113549.1.1.11';
  const ECDSA_SHA256 = '1.2.840.10045.4.3.2';

  it('a signature algorithm that does not fit the key, or parameters where none belong, is refused (table); RSA without NULL is accepted (RFC 4055 §5)', async () => {
    const { createCsr } = await import('../../src/identity/istio-ca/csr.ts');
    const rsa = (await createCsr(GATEWAY_SPIFFE_ID, 'RSA')).csrPem;
    const ec = (await createCsr(GATEWAY_SPIFFE_ID, 'ECDSA')).csrPem;
    // The signature bytes stay valid for the key (same SHA-256 hash): only the label is wrong.
    const rows: Array<[name: string, pem: string, error: RegExp | null]> = [
      ['RSA as sent', rsa, null],
      ['ECDSA as sent', ec, null],
      ['RSA, parameters absent', relabel(rsa, RSA_SHA256, 'none'), null],
      ['RSA key labelled ecdsa-with-SHA256', relabel(rsa, ECDSA_SHA256, 'none'), /does not fit the CSR's rsa key/],
      ['EC key labelled sha256WithRSAEncryption', relabel(ec, RSA_SHA256, 'null'), /does not fit the CSR's ec key/],
      ['ecdsa-with-SHA256 with NULL parameters', relabel(ec, ECDSA_SHA256, 'null'), /parameters not allowed/],
    ];
    for (const [name, pem, error] of rows) {
      if (error === null) assert.doesNotThrow(() => parseCsr(pem), name);
      else assert.throws(() => parseCsr(pem), error, name);
    }
  });
});
