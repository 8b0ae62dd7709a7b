/**
 * `GET /debug/config` says whether the sandwich listener (docs/waypoint.md, "Sandwich mode") is on,
 * where it is bound (the config's port 0 resolved) and its headerTimeoutMs, read over the admin
 * port of a real gateway. The address shown is checked to be the sandwich listener itself: a
 * stream sent there without a PROXY v2 header is refused as `bad_signature`, which only that
 * listener counts (`waygate_sandwich_rejected_total`).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { allowPolicy, hostPort, startTestGateway, type TestGateway } from '../gateway/fixture.ts';

interface SandwichView {
  on: boolean;
  address: string | null;
  headerTimeoutMs: number;
}

const MESH = 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices: []\nworkloads: []\n';

async function debugConfig(t: TestGateway): Promise<{ config: { sandwich: { listen: string | null; headerTimeoutMs: number } }; sandwich: SandwichView }> {
  const res = await t.http('admin', '/debug/config');
  assert.equal(res.status, 200);
  return (await res.json()) as never;
}

describe('GET /debug/config: the sandwich listener', () => {
  let dir: string;
  let on: TestGateway;
  let off: TestGateway;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'waygate-debug-sandwich-'));
    const mesh = join(dir, 'mesh.yaml');
    writeFileSync(mesh, MESH);
    on = await startTestGateway({
      policies: { 'allow.yaml': allowPolicy('clients', 'frontend') },
      spec: `  discovery: { meshFile: ${mesh} }\n  sandwich: { listen: "127.0.0.1:0", headerTimeoutMs: 1234 }`,
    });
    off = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'frontend') } });
  });
  after(async () => {
    await on?.close();
    await off?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('on: the bound address (port 0 resolved) and headerTimeoutMs, next to the config as written', async () => {
    const view = await debugConfig(on);
    assert.equal(view.config.sandwich.listen, '127.0.0.1:0');
    assert.equal(view.sandwich.on, true);
    assert.equal(view.sandwich.headerTimeoutMs, 1234);
    assert.equal(view.sandwich.address, on.gw.runtime!.sandwichAddress);
    const { host, port } = hostPort(view.sandwich.address!);
    assert.equal(host, '127.0.0.1');
    assert.ok(port > 0);

    // The address shown is the sandwich listener's: bytes without a PROXY v2 signature are refused there.
    const sock = createConnection({ host, port });
    sock.on('error', () => undefined);
    await once(sock, 'connect');
    sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await once(sock, 'close');
    const metrics = await (await on.http('metrics', '/metrics')).text();
    assert.match(metrics, /^waygate_sandwich_rejected_total\{reason="bad_signature"\} 1$/m);
  });

  test('off (the default): on false, no address', async () => {
    const view = await debugConfig(off);
    assert.equal(view.config.sandwich.listen, null);
    assert.deepEqual(view.sandwich, { on: false, address: null, headerTimeoutMs: 5000 });
  });
});
