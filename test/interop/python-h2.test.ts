/**
 * Interoperability with an HTTP/2 stack other than Node's: Debian's python3-h2 drives the gateway
 * exactly as ztunnel does (TLS 1.3, ALPN h2, no SNI, client certificate, `:method CONNECT` +
 * `:authority ip:port`, baggage, forwarded, traceparent). The gateway authorizes with a real YAML
 * policy compiled by the policy engine, so this is the whole data path.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decide } from '../../src/policy/engine.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import { GATEWAY_SPIFFE_ID, testPki, writeTlsFiles } from '../helpers/pki.ts';
import { spiffe, startGateway, startUpstream, type Gateway, type Upstream } from '../hbone/fixture.ts';

const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(new URL('./hbone_client.py', import.meta.url));

function pythonHasH2(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import h2'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const POLICY = `
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-to-echo }
spec:
  action: ALLOW
  rules:
    - name: web-in-prod
      when: source.namespace == "prod" && source.serviceAccount == "web" && request.baggage["k8s.deployment.name"] == "web"
`;

interface PyResult {
  status: number | null;
  alpn: string;
  tls: string;
  sent_sha256: string;
  echo_sha256: string;
  echo_bytes: number;
  reset: number | null;
}

function runClient(args: string[]): Promise<PyResult> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [CLIENT, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as PyResult);
    });
  });
}

describe('interop: python3-h2 as a ztunnel-like client', { skip: pythonHasH2() ? false : `${PYTHON} lacks the h2 module (apt-get install python3-h2)` }, () => {
  let gw: Gateway;
  let echo: Upstream;
  let dir: string;
  before(async () => {
    const loaded = compileFromTexts([{ path: 'web.yaml', text: POLICY }], 1);
    assert.ok(loaded.ok, loaded.ok ? '' : JSON.stringify(loaded.diagnostics));
    const snapshot = loaded.snapshot;
    echo = await startUpstream('echo');
    gw = await startGateway({ authorize: (ctx) => decide(snapshot, ctx, { defaultAction: 'DENY' }) });
    dir = mkdtempSync(join(tmpdir(), 'waygate-interop-'));
  });
  after(async () => {
    await gw?.close();
    await echo?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function filesFor(sa: string, ns: string): ReturnType<typeof writeTlsFiles> {
    const pki = testPki();
    return writeTlsFiles(dir, pki.clientFor(spiffe(sa, ns)), pki.trustBundlePem, `${ns}-${sa}`);
  }

  test('an allowed identity gets 200 and a byte-exact echo of 512 KiB', async () => {
    const f = filesFor('web', 'prod');
    const r = await runClient(['127.0.0.1', String(gw.port), f.certFile, f.keyFile, f.caFile, `127.0.0.1:${echo.port}`, GATEWAY_SPIFFE_ID, String(512 * 1024), '7']);
    assert.equal(r.status, 200);
    assert.equal(r.alpn, 'h2');
    assert.equal(r.tls, 'TLSv1.3');
    assert.equal(r.echo_bytes, 512 * 1024);
    assert.equal(r.echo_sha256, r.sent_sha256);
    assert.equal(r.reset, null);

    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'allow');
    assert.equal(d.reason, 'allowed');
    assert.equal(d.policy, 'web-to-echo');
    assert.equal(d.rule, 'web-in-prod');
    assert.equal(d.snapshot.version, 1);
    assert.equal(d.source.principal, spiffe('web', 'prod'));
    assert.equal(d.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(d.baggage['service.version'], 'v1');
    assert.equal(d.headers['forwarded'], 'for="10.0.0.5:43122";host=api.prod.svc.cluster.local');
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'completed');
    assert.equal(c.bytesReceived, 512 * 1024);
    assert.equal(c.bytesSent, 512 * 1024);
  });

  test('a denied identity gets 401 and the destination sees nothing', async () => {
    const f = filesFor('web', 'staging');
    const before = echo.connections;
    const r = await runClient(['127.0.0.1', String(gw.port), f.certFile, f.keyFile, f.caFile, `127.0.0.1:${echo.port}`, GATEWAY_SPIFFE_ID, '1024', '8']);
    assert.equal(r.status, 401);
    assert.equal(r.echo_bytes, 0);
    assert.equal(echo.connections, before);
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'deny');
    assert.equal(d.reason, 'no_allow_match', 'an ALLOW policy applies and no rule matched (Istio step 4)');
    assert.equal(d.status, 401);
    assert.equal(d.source.namespace, 'staging');
  });
});
