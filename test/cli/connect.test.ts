/**
 * `waygate connect` in the first hour (src/cli/connect.ts): defaults for the embedded gateway,
 * `--identity ns/sa` issuing from the dev PKI on first use, every missing flag in one message, a
 * rejected client certificate said in words (and logged by the gateway at warn with the peer), a
 * key that does not match its certificate naming both files. Real processes (bin/waygate.js, the
 * compiled output: `npm run build` first), real TLS, certificates from the project's dev CA.
 */
// own-process: it mostly waits on the waygate processes it starts (~20 s of wall time against <1 s of its own CPU).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, cpSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEchoBackends, type EchoBackends } from '../../examples/traffic/echo-backend.ts';
import { REPO_ROOT, runWaygate } from '../../examples/traffic/gateway-process.ts';
import { createCa, issueLeaf, readCaFiles } from '../../src/identity/dev-ca.ts';
import { startServe, type StartedServe } from '../helpers/serve.ts';

const API_PORT = 8080; // policies/api-from-frontend.yaml allows prod/frontend on port 8080

describe('waygate connect without a gateway', () => {
  let empty: string;
  before(() => {
    empty = mkdtempSync(path.join(os.tmpdir(), 'waygate-connect-empty-'));
  });
  after(() => rmSync(empty, { recursive: true, force: true }));

  test('every missing flag in one message, exit 2', async () => {
    const r = await runWaygate(['connect'], { cwd: empty });
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines[0], 'waygate connect: missing <authority>, --cert and --key, --ca');
    assert.match(r.stderr, /^ {2}--cert and --key: .*--identity <namespace>\/<service-account>/m);
    assert.match(r.stderr, /^ {2}--ca: .*no dev PKI at \.waygate\/pki\/root\.crt/m);
    assert.match(lines.at(-1)!, /^usage: waygate connect <host:port>/);
    assert.ok(!/Options:/.test(r.stderr), 'one message, not the whole help');
  });

  test('--identity with no dev PKI says where it looked; --identity with --cert is a conflict', async () => {
    const r = await runWaygate(['connect', '127.0.0.1:8080', '--identity', 'prod/frontend', '--cert', 'c.crt', '--ca', 'ca.crt'], { cwd: empty });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--identity picks the certificate and key from the dev PKI: give --identity or --cert\/--key, not both/);
    assert.match(r.stderr, /--identity needs the dev PKI in \.waygate\/pki\//);
  });

  test('--address defaults to the embedded gateway', async () => {
    const r = await runWaygate(['connect', '--help'], { cwd: empty });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString().replace(/\s+/g, ' '), /--address <host:port> the HBONE server \(gateway\) to connect to \(default: 127\.0\.0\.1:15008, the embedded gateway\)/);
  });
});

describe('waygate connect against the embedded gateway', () => {
  let work: string;
  let backends: EchoBackends;
  let gateway: StartedServe;
  const pki = (): string => path.join(work, '.waygate', 'pki');
  const connect = (args: string[], input = 'hello\n') =>
    runWaygate(['connect', `${backends.host}:${API_PORT}`, '--address', gateway.addresses.hbone, ...args], { cwd: work, input });

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'waygate-connect-'));
    cpSync(path.join(REPO_ROOT, 'policies'), path.join(work, 'policies'), { recursive: true });
    backends = await startEchoBackends({ ports: [API_PORT] });
    gateway = await startServe(['--listen', '127.0.0.1:0', '--ready-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0',
      '--admin-address', '127.0.0.1:0', '--no-watch'], { cwd: work });
  });
  after(async () => {
    await gateway?.stop('SIGKILL');
    await backends?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('--identity prod/frontend: issued from the dev CA on first use, --ca defaults to the dev PKI, the echo comes back', async () => {
    const first = await connect(['--identity', 'prod/frontend']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.toString(), 'hello\n');
    assert.match(first.stderr, /issued spiffe:\/\/cluster\.local\/ns\/prod\/sa\/frontend into \.waygate\/pki\/prod-frontend\.crt/);
    for (const f of ['prod-frontend.crt', 'prod-frontend.key']) assert.ok(existsSync(path.join(pki(), f)), f);
    const second = await connect(['--identity', 'spiffe://cluster.local/ns/prod/sa/frontend']);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stderr, '', 'reused, not issued again');
    assert.equal(second.stdout.toString(), 'hello\n');
  });

  test('a denied identity is still a 401 (exit 1)', async () => {
    const r = await connect(['--identity', 'dev/web']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /CONNECT 127\.\d+\.\d+\.\d+:8080 answered 401/);
  });

  test('a certificate from another CA: "the gateway rejected this certificate: not signed by its trust bundle"; the gateway logs the peer at warn', async () => {
    const foreign = issueLeaf({ ca: createCa({ trustDomain: 'cluster.local', commonName: 'someone else' }), spiffeId: 'spiffe://cluster.local/ns/prod/sa/frontend' });
    writeFileSync(path.join(work, 'foreign.crt'), foreign.chainPem);
    writeFileSync(path.join(work, 'foreign.key'), foreign.keyPem);
    const r = await connect(['--cert', 'foreign.crt', '--key', 'foreign.key']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^waygate connect: the gateway rejected this certificate \(foreign\.crt\): not signed by its trust bundle/);
    assert.ok(!/RST_STREAM/.test(r.stderr), r.stderr);
    const line = await gateway.waitForLine((l) => l['msg'] === 'TLS handshake failed' && l['reason'] === 'untrusted', { what: 'handshake warn line' });
    assert.equal(line['level'], 'warn');
    assert.match(String(line['peer']), /^127\.0\.0\.1:\d+$/);
  });

  test('an expired certificate from the dev CA: rejected, "expired on ..."', async () => {
    const ca = readCaFiles(pki());
    const expired = issueLeaf({ ca, spiffeId: 'spiffe://cluster.local/ns/prod/sa/frontend', notBefore: new Date(Date.now() - 2 * 3_600_000), notAfter: new Date(Date.now() - 3_600_000) });
    writeFileSync(path.join(work, 'expired.crt'), expired.chainPem);
    writeFileSync(path.join(work, 'expired.key'), expired.keyPem);
    const r = await connect(['--cert', 'expired.crt', '--key', 'expired.key']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the gateway rejected this certificate \(expired\.crt\): expired on \d{4}-/);
  });

  test('nothing listening at --address: the refusal, and a hint that no gateway runs there', async () => {
    // Port 1 (tcpmux) is privileged and unused on a test machine: the connection is refused.
    const r = await runWaygate(['connect', `${backends.host}:${API_PORT}`, '--identity', 'prod/frontend', '--address', '127.0.0.1:1'], { cwd: work });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /ECONNREFUSED.*: is a gateway running there\? \(`npm start` listens on 127\.0\.0\.1:15008; --address picks another\)/);
  });

  test('a key that does not match its certificate names both files, exit 2, nothing sent', async () => {
    const other = issueLeaf({ ca: readCaFiles(pki()), spiffeId: 'spiffe://cluster.local/ns/prod/sa/other' });
    writeFileSync(path.join(work, 'other.key'), other.keyPem);
    const r = await connect(['--cert', '.waygate/pki/prod-frontend.crt', '--key', 'other.key']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, 'waygate connect: the key in --key other.key does not match the certificate in --cert .waygate/pki/prod-frontend.crt (their public keys differ): pass the key issued with that certificate\n');
  });
});
