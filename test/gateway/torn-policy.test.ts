/**
 * A torn policy file must never loosen enforcement. Reproduced on the earlier
 * main: `: > deny.yaml` was applied as "no policies in this file" (reload record `applied`) and the
 * frontend then reached the denied address; a file cut at a `---` boundary dropped the policies
 * after the cut; with `defaultAction: ALLOW`, a torn ALLOW file let everyone in. Each is now a
 * rejected load: the last good snapshot stays, and the reload record and the metrics say why.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { allowPolicy, startTestGateway, type TestGateway } from './fixture.ts';

/** An echo server on `host` (a distinct loopback address stands for a distinct destination). */
async function echoOn(host: string): Promise<{ server: Server; authority: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined).once('close', () => sockets.delete(s));
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    server,
    authority: `${host}:${(server.address() as AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const denyPolicy = (name: string, ip: string): string =>
  `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\nspec:\n  action: DENY\n  rules:\n    - name: no-${ip.replaceAll('.', '-')}\n      when: destination.ip == "${ip}"\n`;

let three: Awaited<ReturnType<typeof echoOn>>;
let four: Awaited<ReturnType<typeof echoOn>>;
let one: Awaited<ReturnType<typeof echoOn>>;
before(async () => {
  [one, three, four] = await Promise.all([echoOn('127.0.0.1'), echoOn('127.0.0.3'), echoOn('127.0.0.4')]);
});
after(async () => {
  await Promise.all([one.close(), three.close(), four.close()]);
});

async function status(t: TestGateway, sa: string, authority: string): Promise<number> {
  const session = await t.connect(sa);
  const tunnel = await session.openTunnel(authority);
  tunnel.stream.on('error', () => undefined);
  tunnel.stream.destroy();
  session.destroy();
  return tunnel.status;
}

async function metric(t: TestGateway, name: string): Promise<string[]> {
  const text = await (await t.http('metrics', '/metrics')).text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

describe('a torn DENY file (defaultAction DENY)', () => {
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({
      policies: {
        'allow.yaml': allowPolicy('frontend', 'frontend'),
        'deny.yaml': `${denyPolicy('deny-three', '127.0.0.3')}---\n${denyPolicy('deny-four', '127.0.0.4')}`,
      },
    });
  });
  after(() => t.close());

  test('an emptied file is rejected with WG_POLICY_EMPTY; the DENYs stay in force', async () => {
    assert.equal(await status(t, 'frontend', three.authority), 401);
    assert.equal(await status(t, 'frontend', one.authority), 200);
    const startup = t.sink.reloads[0]!;

    const reload = t.nextReload();
    t.writePolicy('deny.yaml', ''); // `: > deny.yaml`
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.deepEqual(record.errors.map((e) => [e.code, e.file.endsWith('deny.yaml'), e.line, e.col]), [['WG_POLICY_EMPTY', true, 1, 1]]);
    assert.equal(record.previous?.hash, startup.snapshot.hash);
    assert.equal(t.gw.runtime!.store.current()!.hash, startup.snapshot.hash, 'the last good snapshot is in force');
    assert.equal(await status(t, 'frontend', three.authority), 401, 'still denied');
    assert.equal(await status(t, 'frontend', four.authority), 401, 'still denied');
    assert.deepEqual(await metric(t, 'waygate_policy_reload_errors_total{'), ['waygate_policy_reload_errors_total{code="WG_POLICY_EMPTY"} 1']);
    assert.ok((await metric(t, 'waygate_policy_reloads_total{result="rejected",trigger="watch"}'))[0]?.endsWith(' 1'));
  });

  test('a file cut at a `---` boundary is rejected; the policies after the cut stay in force', async () => {
    const reload = t.nextReload();
    t.writePolicy('deny.yaml', `${denyPolicy('deny-three', '127.0.0.3')}---\n`);
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.deepEqual(record.errors.map((e) => e.code), ['WG_POLICY_EMPTY']);
    assert.equal(await status(t, 'frontend', four.authority), 401, 'the DENY after the cut still applies');

    // The complete file again: applied (nothing changed against the last good snapshot).
    const restored = t.nextReload();
    t.writePolicy('deny.yaml', `${denyPolicy('deny-three', '127.0.0.3')}---\n${denyPolicy('deny-four', '127.0.0.4')}`);
    assert.equal((await restored).result, 'unchanged');
  });
});

describe('a policy file still being written', () => {
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'frontend'), 'deny.yaml': denyPolicy('deny-three', '127.0.0.3') } });
  });
  after(() => t.close());

  test('is not applied until it settles: WG_POLICY_UNSTABLE, the last good snapshot stays', async () => {
    const startup = t.sink.reloads[0]!;
    const reload = t.nextReload();
    // A DENY file cut after its header, whose writer is "still writing": its modification time
    // stays ahead of the gateway's clock (as a writer touching it every moment would keep it young).
    const path = join(t.policyDir, 'deny.yaml');
    writeFileSync(path, 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-three\n');
    const future = new Date(Date.now() + 3_600_000);
    utimesSync(path, future, future);
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.deepEqual(record.errors.map((e) => e.code), ['WG_POLICY_UNSTABLE']);
    assert.equal(t.gw.runtime!.store.current()!.hash, startup.snapshot.hash);
    assert.equal(await status(t, 'frontend', three.authority), 401);

    const settled = t.nextReload();
    writeFileSync(path, denyPolicy('deny-three', '127.0.0.3') + denyPolicy('deny-four', '127.0.0.4').replace(/^apiVersion/, '---\napiVersion'));
    assert.equal((await settled).result, 'applied');
    assert.equal(await status(t, 'frontend', four.authority), 401);
  });
});

describe('a torn ALLOW file (defaultAction ALLOW)', () => {
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('frontend-only', 'frontend') }, spec: '  defaultAction: ALLOW' });
  });
  after(() => t.close());

  test('an emptied ALLOW file does not turn the gateway into allow-all', async () => {
    assert.equal(await status(t, 'intruder', one.authority), 401, 'no_allow_match while the ALLOW policy applies');
    const reload = t.nextReload();
    t.writePolicy('allow.yaml', '# truncated\n');
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.equal(record.errors[0]?.code, 'WG_POLICY_EMPTY');
    assert.equal(await status(t, 'intruder', one.authority), 401, 'still refused');
    assert.equal(await status(t, 'frontend', one.authority), 200);
  });
});
