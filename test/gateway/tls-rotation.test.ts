/**
 * Certificate rotation mid-traffic (docs/operating.md "Certificate rotation"): the files change on disk, new handshakes
 * present the new certificate, established connections keep working, and a broken file keeps the
 * old material with an alert metric.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { GATEWAY_SPIFFE_ID, testPki } from '../helpers/pki.ts';
import { allowPolicy, startTestGateway, type TestGateway } from './fixture.ts';

let upstream: Upstream;
let t: TestGateway;
before(async () => {
  upstream = await startUpstream('echo');
  t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'frontend') } });
});
after(async () => {
  await t.close();
  await upstream.close();
});

function peerFingerprint(session: { session: { socket: unknown } }): string {
  return (session.session.socket as TLSSocket).getPeerCertificate().fingerprint256;
}

test('rotation: old connections keep working, new ones present the new certificate; broken files keep the old one', async () => {
  const pki = testPki();
  const authority = `127.0.0.1:${upstream.port}`;
  const old = await t.connect('frontend');
  assert.equal(peerFingerprint(old), pki.serverCert.fingerprint256);
  const oldTunnel = await old.openTunnel(authority);
  assert.equal(oldTunnel.status, 200);

  const rotated = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID, dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  const updated = once(t.gw.runtime!.events, 'tls-update');
  // Key first, then certificate (the watcher validates the pair; a half-written pair is retried).
  writeFileSync(t.tls.keyFile, rotated.keyPem);
  writeFileSync(t.tls.certFile, rotated.chainPem);
  await updated;

  const fresh = await t.connect('frontend');
  assert.equal(peerFingerprint(fresh), rotated.fingerprint256, 'a new handshake gets the new certificate');
  const freshTunnel = await fresh.openTunnel(authority);
  assert.equal(freshTunnel.status, 200);

  // The connection made before the rotation still opens tunnels and its open tunnel still carries bytes.
  const again = await old.openTunnel(authority);
  assert.equal(again.status, 200);
  oldTunnel.stream.write('still here');
  const [echoed] = (await once(oldTunnel.stream, 'data')) as [Buffer];
  assert.equal(echoed.toString(), 'still here');

  // A broken file: the error is reported and counted, the rotated material stays in use.
  const failed = once(t.gw.runtime!.events, 'tls-error');
  writeFileSync(t.tls.certFile, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
  const [err] = (await failed) as [Error];
  assert.match(err.message, new RegExp(t.tls.certFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  const after = await t.connect('frontend');
  assert.equal(peerFingerprint(after), rotated.fingerprint256);
  const metrics = await (await t.http('metrics', '/metrics')).text();
  assert.match(metrics, /^waygate_tls_material_errors_total 1$/m);
  assert.match(metrics, /^waygate_tls_material_reloads_total 1$/m);
  const expiry = Number(/^waygate_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(metrics)![1]);
  assert.equal(expiry, Math.floor(rotated.notAfter.getTime() / 1000));
  for (const s of [oldTunnel, freshTunnel, again]) s.stream.close();
});

test('a certificate file whose notAfter passes without a replacement: not ready (tls_certificate_expired) until a valid one is written', async () => {
  const pki = testPki();
  // Expires two seconds from now (X.509 times have one-second resolution).
  const shortLived = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID, dnsNames: ['localhost'], ips: ['127.0.0.1'], notAfter: new Date(Date.now() + 2_000) });
  const updated = once(t.gw.runtime!.events, 'tls-update');
  writeFileSync(t.tls.keyFile, shortLived.keyPem);
  writeFileSync(t.tls.certFile, shortLived.chainPem);
  await updated;
  const readiness = t.gw.runtime!.readiness;
  assert.equal(readiness.state().ready, true);
  await new Promise<void>((resolve) => readiness.onChange((st) => { if (st.reasons.includes('tls_certificate_expired')) resolve(); }));
  assert.ok(Date.now() >= shortLived.notAfter.getTime(), 'at notAfter, not before');
  const res = await t.http('ready', '/healthz/ready');
  assert.equal(res.status, 503);
  assert.match(await res.text(), /tls_certificate_expired/);
  const renewed = pki.issue({ spiffeId: GATEWAY_SPIFFE_ID, dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  const again = once(t.gw.runtime!.events, 'tls-update');
  writeFileSync(t.tls.keyFile, renewed.keyPem);
  writeFileSync(t.tls.certFile, renewed.chainPem);
  await again;
  assert.equal((await t.http('ready', '/healthz/ready')).status, 200);
});
