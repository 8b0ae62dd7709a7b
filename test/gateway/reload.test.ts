/**
 * Hot reload under traffic (docs/operating.md "Policy reload") and readiness transitions, through the real
 * composition root: policy files on disk, the directory watcher, the reloader, the store, the
 * HBONE server's re-check, the audit sink and the admin ports.
 */
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants as h2c } from 'node:http2';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closed, startUpstream, type Upstream } from '../hbone/fixture.ts';
import { spiffe } from '../helpers/pki.ts';
import { allowPolicy, startTestGateway, type TestGateway } from './fixture.ts';

let upstream: Upstream;
before(async () => {
  upstream = await startUpstream('echo');
});
after(() => upstream.close());

/** Writes `text` on the tunnel and resolves with the same number of bytes echoed back. */
function echo(stream: NodeJS.ReadWriteStream & { write(b: Buffer): boolean }, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (got.length >= text.length) {
        stream.off('data', onData);
        resolve(got);
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
    stream.write(Buffer.from(text));
  });
}

describe('policy reload under traffic', () => {
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'keep', 'drop') } });
  });
  after(() => t.close());

  test('a tunnel allowed before and after stays open with its bytes; a now-denied one is reset with policy_changed', async () => {
    const authority = `127.0.0.1:${upstream.port}`;
    const keepSession = await t.connect('keep');
    const dropSession = await t.connect('drop');
    const keep = await keepSession.openTunnel(authority);
    const drop = await dropSession.openTunnel(authority);
    assert.equal(keep.status, 200);
    assert.equal(drop.status, 200);
    assert.equal(await echo(keep.stream, 'before-'), 'before-');
    assert.equal(await echo(drop.stream, 'x'), 'x');
    const startup = t.sink.reloads[0]!;
    assert.equal(startup.trigger, 'startup');
    assert.equal(startup.result, 'applied');

    const dropClosed = closed(drop.stream);
    const reload = t.nextReload();
    t.writePolicy('allow.yaml', allowPolicy('clients', 'keep'));
    const record = await reload;
    assert.equal(record.event, 'reload');
    assert.equal(record.trigger, 'watch');
    assert.equal(record.result, 'applied');
    assert.equal(record.closedTunnels, 1);
    assert.deepEqual(record.previous, startup.snapshot);
    assert.ok(record.snapshot.version > startup.snapshot.version);
    assert.notEqual(record.snapshot.hash, startup.snapshot.hash);

    await dropClosed;
    assert.equal(drop.stream.rstCode, h2c.NGHTTP2_CANCEL, 'RST_STREAM(CANCEL), as ztunnel does on a policy change');
    const dropDecision = t.sink.decisions.find((d) => d.source.principal === spiffe('drop', 'prod'))!;
    await t.sink.until(() => t.sink.closes.some((c) => c.decisionId === dropDecision.decisionId));
    const dropClose = t.sink.closes.find((c) => c.decisionId === dropDecision.decisionId)!;
    assert.equal(dropClose.closeReason, 'policy_changed');
    assert.deepEqual(dropClose.snapshot, record.snapshot);
    assert.equal(dropClose.bytesReceived, 1);

    // The surviving tunnel never noticed.
    assert.equal(await echo(keep.stream, 'after'), 'after');
    const keepClosed = closed(keep.stream);
    keep.stream.end();
    keep.stream.resume();
    await keepClosed;
    const keepDecision = t.sink.decisions.find((d) => d.source.principal === spiffe('keep', 'prod'))!;
    await t.sink.until(() => t.sink.closes.some((c) => c.decisionId === keepDecision.decisionId));
    const keepClose = t.sink.closes.find((c) => c.decisionId === keepDecision.decisionId)!;
    assert.equal(keepClose.closeReason, 'completed');
    assert.equal(keepClose.bytesReceived, 'before-after'.length);
    assert.equal(keepClose.bytesSent, 'before-after'.length);

    // New CONNECTs meet the new snapshot.
    const denied = await dropSession.openTunnel(authority);
    assert.equal(denied.status, 401);
    const deniedRecord = t.sink.decisions.at(-1)!;
    assert.equal(deniedRecord.reason, 'no_allow_match');
    assert.deepEqual(deniedRecord.snapshot, record.snapshot);
  });

  test('an invalid policy file is rejected whole, with positions; enforcement stays as it was', async () => {
    const before = t.sink.reloads.at(-1)!;
    const reload = t.nextReload();
    t.writePolicy('broken.yaml', 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: broken }\nspec:\n  action: ALLOW\n  rules:\n    - name: typo\n      when: source.principle == "x"\n');
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.equal(record.trigger, 'watch');
    assert.deepEqual(record.previous, before.snapshot);
    assert.ok(record.errors.length >= 1);
    const e = record.errors[0]!;
    assert.ok(e.file.endsWith('broken.yaml'), e.file);
    assert.equal(e.line, 8);
    assert.match(e.code, /^WG_POLICY_/);
    assert.ok(e.col >= 13, `column ${e.col} points into the expression`);

    assert.equal(t.gw.runtime!.store.current()!.hash, before.snapshot.hash, 'the previous snapshot stays in force');
    const ready = await t.http('ready', '/healthz/ready');
    assert.equal(ready.status, 200, 'a rejected reload does not make a running gateway unready');
    const authority = `127.0.0.1:${upstream.port}`;
    const keep = await (await t.connect('keep')).openTunnel(authority);
    assert.equal(keep.status, 200);
    keep.stream.close();
    const drop = await (await t.connect('drop')).openTunnel(authority);
    assert.equal(drop.status, 401);

    const metrics = await (await t.http('metrics', '/metrics')).text();
    assert.match(metrics, /^waygate_policy_reloads_total\{result="rejected",trigger="watch"\} 1$/m);
    assert.match(metrics, new RegExp(`^waygate_policy_snapshot_info\\{version="${before.snapshot.version}",hash="${before.snapshot.hash}"\\} 1$`, 'm'));

    // Fixing the file loads the whole set again.
    const fixed = t.nextReload();
    rmSync(join(t.policyDir, 'broken.yaml'));
    const again = await fixed;
    assert.equal(again.result, 'unchanged', 'the same files as the snapshot in force');
  });
});

describe('readiness', () => {
  test('not ready without a snapshot, ready once one loads, not ready while draining', async () => {
    const t = await startTestGateway({
      policies: { 'bad.yaml': 'kind: Nonsense\n' },
      spec: '  timeouts: { drainTimeoutMs: 10000 }',
    });
    let tunnelStream: import('node:http2').ClientHttp2Stream | undefined;
    try {
      assert.equal(t.sink.reloads[0]!.result, 'rejected');
      let res = await t.http('ready', '/healthz/ready');
      assert.equal(res.status, 503);
      assert.match(await res.text(), /policy_snapshot_not_loaded/);
      // Fail closed: no snapshot, every CONNECT is denied.
      const early = await (await t.connect('keep')).openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(early.status, 401);
      assert.deepEqual(t.sink.decisions.at(-1)!.snapshot, { version: 0, hash: '' });

      const reload = t.nextReload();
      unlinkSync(join(t.policyDir, 'bad.yaml'));
      t.writePolicy('ok.yaml', allowPolicy('clients', 'keep'));
      assert.equal((await reload).result, 'applied');
      res = await t.http('ready', '/healthz/ready');
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'ready\n');

      // A tunnel in flight holds the drain open; readiness answers 503 meanwhile.
      const tunnel = await (await t.connect('keep')).openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(tunnel.status, 200);
      tunnelStream = tunnel.stream;
      const draining = t.gw.shutdown('test drain');
      res = await t.http('ready', '/healthz/ready');
      assert.equal(res.status, 503);
      assert.match(await res.text(), /draining/);
      // The tunnel still carries bytes during the drain, then finishes on its own.
      assert.equal(await echo(tunnel.stream, 'late'), 'late');
      const done = closed(tunnel.stream);
      tunnel.stream.end();
      tunnel.stream.resume();
      await done;
      await draining;
      assert.equal(await t.gw.done, 0);
      const last = t.sink.closes.at(-1)!;
      assert.equal(last.closeReason, 'completed');
    } finally {
      tunnelStream?.destroy();
      await t.close();
    }
  });
});

describe('ConfigMap-style updates', () => {
  test('a policy directory that is a ConfigMap mount reloads on the atomic ..data symlink swap', async () => {
    const t = await startTestGateway({ policies: {} });
    try {
      const cm = t.policyDir;
      mkdirSync(join(cm, '..v1'));
      writeFileSync(join(cm, '..v1', 'allow.yaml'), allowPolicy('clients', 'a'));
      symlinkSync('..v1', join(cm, '..data_tmp'));
      let next = t.nextReload();
      renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
      symlinkSync('..data/allow.yaml', join(cm, 'allow.yaml'));
      assert.equal((await next).rules, 1);

      mkdirSync(join(cm, '..v2'));
      writeFileSync(join(cm, '..v2', 'allow.yaml'), allowPolicy('clients', 'a', 'b', 'c'));
      symlinkSync('..v2', join(cm, '..data_tmp'));
      next = t.nextReload();
      renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
      const rec = await next;
      assert.equal(rec.trigger, 'watch');
      assert.equal(rec.result, 'applied');
      assert.equal(rec.rules, 3);
    } finally {
      await t.close();
    }
  });
});
