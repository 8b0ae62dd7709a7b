/**
 * The README's quick start, end to end with real processes (issue "HBONE data plane", last
 * bullet): from a fresh working copy, `npm start` (= `node bin/waygate.js serve`, the embedded
 * profile) mints its dev PKI into `.waygate/pki/` and serves the example policies; `waygate certs
 * issue` with no `--dir` (its default is that same directory) signs a freshly issued allowed
 * identity, which gets an echo through an example backend with `waygate connect`; a denied one
 * gets 401. Then SIGTERM, and the audit log is checked field by field.
 *
 * Isolation from a developer's own gateway: the working copy is a temp directory (so `.waygate/`
 * is fresh), every gateway port is 0 (bound addresses come from the "listening" log line), and the
 * echo backend listens on the port the example policy names (8080) but on a random 127.x.y.z.
 */
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CloseRecord, DecisionRecord, ReloadRecord } from '../../src/audit/record.ts';
import { startEchoBackends, type EchoBackends } from '../../examples/traffic/echo-backend.ts';
import { httpGet, REPO_ROOT, runWaygate } from '../../examples/traffic/gateway-process.ts';
import { startServe, type StartedServe } from '../helpers/serve.ts';

const SERVER_ID = 'spiffe://cluster.local/ns/waygate/sa/waygate';
const FRONTEND = 'spiffe://cluster.local/ns/prod/sa/frontend';
const DEV = 'spiffe://cluster.local/ns/dev/sa/web';
const API_PORT = 8080; // policies/api-from-frontend.yaml selects destination.port == 8080

describe('quick start: npm start, certs issue, connect', () => {
  let work: string;
  let pki: string;
  let auditFile: string;
  let backends: EchoBackends;
  let gateway: StartedServe;
  const payload = Buffer.concat([Buffer.from('hello through waygate\n'), randomBytes(64 * 1024)]);
  let allowedSourcePort = 0;

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'waygate-quickstart-'));
    pki = path.join(work, '.waygate', 'pki');
    auditFile = path.join(work, 'audit.jsonl');
    // A working copy with the example policies as they are (a copy, so an edit made elsewhere
    // while the test runs cannot trigger a reload under it).
    cpSync(path.join(REPO_ROOT, 'policies'), path.join(work, 'policies'), { recursive: true });
    backends = await startEchoBackends({ ports: [API_PORT] });
    gateway = await startServe([
      '--listen', '127.0.0.1:0',
      '--ready-address', '127.0.0.1:0',
      '--metrics-address', '127.0.0.1:0',
      '--admin-address', '127.0.0.1:0',
      '--audit-log', auditFile,
      '--drain-timeout-ms', '2000',
    ], { cwd: work });
  });

  after(async () => {
    await gateway?.stop('SIGKILL');
    await backends?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('npm start runs `node bin/waygate.js serve`', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    assert.equal(pkg.scripts['start'], 'node bin/waygate.js serve');
    assert.equal(pkg.bin['waygate'], 'bin/waygate.js');
  });

  test('first run mints the dev PKI into .waygate/pki/, serves on loopback and is ready', async () => {
    for (const f of ['ca.crt', 'ca.key', 'root.crt', 'server.crt', 'server.key']) assert.ok(existsSync(path.join(pki, f)), `.waygate/pki/${f}`);
    const server = new X509Certificate(readFileSync(path.join(pki, 'server.crt')));
    assert.match(server.subjectAltName ?? '', new RegExp(`URI:${SERVER_ID}`));
    assert.ok(server.checkIssued(new X509Certificate(readFileSync(path.join(pki, 'root.crt')))));
    for (const address of Object.values(gateway.addresses)) assert.match(address, /^127\.0\.0\.1:\d+$/);
    const minted = gateway.lines.find((l) => l['msg'] === 'development PKI minted (embedded profile)');
    assert.ok(minted, 'the gateway says it minted the dev PKI');
    const ready = await httpGet(gateway.addresses.ready, '/healthz/ready');
    assert.equal(ready.status, 200, ready.body);
  });

  test('waygate certs issue (no flags) signs an allowed and a denied identity with the dev CA', async () => {
    const results = await Promise.all([FRONTEND, DEV].map((id) => runWaygate(['certs', 'issue', id], { cwd: work })));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const root = new X509Certificate(readFileSync(path.join(pki, 'root.crt')));
    for (const [file, id] of [['prod-frontend.crt', FRONTEND], ['dev-web.crt', DEV]] as const) {
      const cert = new X509Certificate(readFileSync(path.join(pki, file)));
      assert.equal(cert.subjectAltName, `URI:${id}`);
      assert.ok(cert.checkIssued(root) && cert.verify(root.publicKey), `${file} is signed by the dev CA`);
    }
  });

  const connect = (who: 'prod-frontend' | 'dev-web') =>
    runWaygate([
      'connect', `${backends.host}:${API_PORT}`,
      '--address', gateway.addresses.hbone,
      '--cert', `.waygate/pki/${who}.crt`,
      '--key', `.waygate/pki/${who}.key`,
      '--ca', '.waygate/pki/root.crt',
      '--server-id', SERVER_ID,
      '--ztunnel-headers',
    ], { cwd: work, input: payload });

  test('the allowed identity gets its bytes echoed through the example backend', async () => {
    const r = await connect('prod-frontend');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, payload.length);
    assert.ok(r.stdout.equals(payload), 'the echo is byte-exact');
    assert.equal(backends.connections(API_PORT), 1);
  });

  test('the denied identity is answered 401 and the backend sees no connection', async () => {
    const r = await connect('dev-web');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /CONNECT 127\.\d+\.\d+\.\d+:8080 answered 401/);
    assert.equal(r.stdout.length, 0);
    assert.equal(backends.connections(API_PORT), 1, 'still only the allowed tunnel');
  });

  test('SIGTERM drains, exits 0, and the audit log holds each decision and the close', async () => {
    assert.equal(await gateway.stop('SIGTERM'), 0, gateway.stderr());
    const records = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ReloadRecord | DecisionRecord | CloseRecord);
    assert.deepEqual(records.map((r) => r.event), ['reload', 'decision', 'close', 'decision']);
    const [reload, allowed, close, denied] = records as [ReloadRecord, DecisionRecord, CloseRecord, DecisionRecord];

    assert.equal(reload.schema, 1);
    assert.equal(reload.result, 'applied');
    assert.equal(reload.trigger, 'startup');
    assert.deepEqual(reload.errors, []);
    assert.equal(reload.snapshot.version, 1);
    assert.match(reload.snapshot.hash, /^[0-9a-f]{64}$/);
    assert.ok(reload.policies > 0 && reload.rules > 0);

    // The allowed CONNECT: policy, rule, the dry-run trial (traced, so it would allow too), identity
    // from the certificate, address from the socket, ztunnel's headers as sent by `--ztunnel-headers`.
    const destination = { authority: `${backends.host}:${API_PORT}`, ip: backends.host, port: API_PORT, host: '', service: '', namespace: '', workload: '', principal: '' };
    assert.equal(allowed.schema, 1);
    assert.match(allowed.decisionId, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(allowed.time)));
    assert.equal(allowed.decision, 'allow');
    assert.equal(allowed.reason, 'allowed');
    assert.equal(allowed.status, 200);
    assert.equal(allowed.policy, 'api-from-frontend');
    assert.equal(allowed.rule, 'frontend');
    assert.equal(allowed.dryRun?.decision, 'allow');
    assert.equal(allowed.dryRun?.wouldChange, false);
    assert.deepEqual(allowed.audit, []);
    assert.deepEqual(allowed.evalErrors, []);
    assert.deepEqual(allowed.snapshot, reload.snapshot);
    assert.equal(allowed.source.principal, FRONTEND);
    assert.equal(allowed.source.trustDomain, 'cluster.local');
    assert.equal(allowed.source.namespace, 'prod');
    assert.equal(allowed.source.serviceAccount, 'frontend');
    assert.equal(allowed.source.ip, '127.0.0.1');
    assert.ok(allowed.source.port > 0);
    allowedSourcePort = allowed.source.port;
    assert.deepEqual(allowed.destination, destination);
    assert.deepEqual(Object.keys(allowed.headers).sort(), ['baggage', 'forwarded', 'traceparent']);
    // `connect` reports its own socket in `forwarded`: the same address the gateway recorded.
    assert.equal(allowed.headers['forwarded'], `for="127.0.0.1:${allowedSourcePort}"`);
    const traceparent = /^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/.exec(allowed.headers['traceparent'] ?? '');
    assert.ok(traceparent, allowed.headers['traceparent']);
    assert.equal(allowed.traceId, traceparent[1]);
    assert.equal(allowed.baggage['k8s.namespace.name'], 'prod');
    assert.equal(allowed.baggage['service.name'], 'frontend');
    assert.equal(allowed.connection.id, allowed.connectionId);
    assert.equal(allowed.connection.tlsVersion, 'TLSv1.3');
    assert.equal(allowed.streamId, 1);
    assert.ok(allowed.evalMicros >= 0);

    // Its close: same keys, every byte counted both ways.
    assert.equal(close.schema, 1);
    assert.equal(close.decisionId, allowed.decisionId);
    assert.equal(close.connectionId, allowed.connectionId);
    assert.equal(close.streamId, allowed.streamId);
    assert.deepEqual(close.source, allowed.source);
    assert.deepEqual(close.destination, destination);
    assert.equal(close.bytesReceived, payload.length);
    assert.equal(close.bytesSent, payload.length);
    assert.equal(close.closeReason, 'completed');
    assert.ok(Number.isInteger(close.durationMs) && close.durationMs >= 0);
    assert.ok(Date.parse(close.time) >= Date.parse(allowed.time));

    // The denied CONNECT: deny-dev wins (explicit DENY before any ALLOW), 401, and no tunnel.
    assert.equal(denied.decision, 'deny');
    assert.equal(denied.reason, 'explicit_deny');
    assert.equal(denied.status, 401);
    assert.equal(denied.policy, 'deny-dev');
    assert.equal(denied.rule, 'dev-namespace');
    assert.deepEqual(denied.evalErrors, []);
    assert.equal(denied.source.principal, DEV);
    assert.equal(denied.source.namespace, 'dev');
    assert.equal(denied.source.serviceAccount, 'web');
    assert.deepEqual(denied.destination, destination);
    assert.notEqual(denied.connectionId, allowed.connectionId);
    assert.equal(denied.baggage['k8s.namespace.name'], 'dev');
  });
});
