/**
 * `npm start` on a fresh clone (README.md "Quick start"): `waygate serve` with no config mints the dev PKI
 * into .waygate/pki/, loads ./policies, listens on loopback, forwards only to loopback, and a client
 * certificate from the same CA gets through to an echo backend.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connectHbone } from '../../src/hbone/client.ts';
import { issueLeaf, readCaFiles } from '../../src/identity/dev-ca.ts';
import { ensureDevPki } from '../../src/gateway/dev-pki.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { spiffe } from '../helpers/pki.ts';
import { spawnServe } from '../helpers/serve.ts';
import { allowPolicy, hostPort } from './fixture.ts';

let upstream: Upstream;
let cwd: string;
before(async () => {
  upstream = await startUpstream('echo');
  cwd = mkdtempSync(join(tmpdir(), 'waygate-fresh-'));
  mkdirSync(join(cwd, 'policies'));
  writeFileSync(join(cwd, 'policies', 'allow.yaml'), allowPolicy('clients', 'frontend'));
});
after(async () => {
  await upstream.close();
  rmSync(cwd, { recursive: true, force: true });
});

test('ensureDevPki mints once, keeps the key private, and re-issues for a replaced CA', () => {
  const dir = join(cwd, 'pki-unit');
  const first = ensureDevPki(dir);
  assert.equal(first.minted, 'ca+server');
  assert.equal(statSync(first.keyFile).mode & 0o777, 0o600);
  assert.equal(ensureDevPki(dir).minted, 'none');
  rmSync(join(dir, 'ca.crt'));
  rmSync(join(dir, 'ca.key'));
  assert.equal(ensureDevPki(dir).minted, 'ca+server', 'a missing CA is minted again, with a server cert it signs');
  assert.equal(ensureDevPki(dir, Date.now() + 400 * 24 * 3600 * 1000).minted, 'server', 'an expiring server cert is re-issued');
});

test('waygate serve with no config: dev PKI minted, loopback only, an allowed client reaches an echo backend', async () => {
  // Ports 0 so parallel test runs never collide; everything else is the embedded default.
  const serve = spawnServe(['--listen', '127.0.0.1:0', '--ready-address', '127.0.0.1:0',
    '--metrics-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--audit-log', join(cwd, 'audit.jsonl')], { cwd });
  try {
    const listening = await serve.waitForLine((l) => l['msg'] === 'listening', { what: '"listening" log line' });
    assert.equal(listening['profile'], 'embedded');
    for (const k of ['hbone', 'ready', 'metrics', 'admin']) assert.match(String(listening[k]), /^127\.0\.0\.1:\d+$/);
    assert.ok(serve.lines.some((l) => l['minted'] === 'ca+server'), serve.stderr());
    const pkiDir = join(cwd, '.waygate', 'pki');
    for (const f of ['ca.crt', 'ca.key', 'root.crt', 'server.crt', 'server.key']) assert.ok(existsSync(join(pkiDir, f)), f);

    const ca = readCaFiles(pkiDir);
    const client = issueLeaf({ ca, spiffeId: spiffe('frontend', 'prod') });
    const session = await connectHbone({
      address: hostPort(String(listening['hbone'])), cert: client.chainPem, key: client.keyPem, ca: ca.certPem,
      expectedServerSpiffeId: 'spiffe://cluster.local/ns/waygate/sa/waygate',
    });
    const tunnel = await session.openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(tunnel.status, 200);
    tunnel.stream.write('hello');
    const [data] = (await once(tunnel.stream, 'data')) as [Buffer];
    assert.equal(data.toString(), 'hello');
    tunnel.stream.close();
    session.destroy();

    assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
  } finally {
    await serve.stop('SIGKILL');
  }
});
