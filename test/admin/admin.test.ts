import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { Readiness } from '../../src/admin/readiness.ts';
import { startAdminServers, type AdminHandlers, type AdminServers } from '../../src/admin/server.ts';
import { WaygateError } from '../../src/errors.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { allowPolicy, spiffeId, startTestGateway, type TestGateway } from '../gateway/fixture.ts';

const parseMetrics = createRequire(import.meta.url)('parse-prometheus-text-format') as (t: string) => {
  name: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}[];

describe('readiness state', () => {
  test('transitions: TLS and snapshot both needed, draining is final', () => {
    const r = new Readiness();
    const seen: boolean[] = [];
    r.onChange((s) => seen.push(s.ready));
    assert.deepEqual(r.state(), { ready: false, reasons: ['tls_material_not_loaded', 'policy_snapshot_not_loaded'] });
    r.setTlsLoaded();
    assert.deepEqual(r.state().reasons, ['policy_snapshot_not_loaded']);
    r.setSnapshotLoaded();
    assert.deepEqual(r.state(), { ready: true, reasons: [] });
    r.setDraining();
    assert.deepEqual(r.state(), { ready: false, reasons: ['draining'] });
    r.setSnapshotLoaded();
    assert.equal(r.state().ready, false);
    assert.deepEqual(seen, [false, true, false, false]);
  });
});

describe('admin listeners', () => {
  let servers: AdminServers;
  const calls: string[] = [];
  let ready = false;
  const handlers: AdminHandlers = {
    readiness: () => (ready ? { ready: true, reasons: [] } : { ready: false, reasons: ['policy_snapshot_not_loaded'] }),
    metrics: async () => '# HELP x y\n# TYPE x counter\nx 1\n',
    metricsContentType: 'text/plain; version=0.0.4; charset=utf-8',
    config: () => ({ listen: '127.0.0.1:15008' }),
    policy: () => ({ loaded: true }),
    connections: () => ({ tunnels: [] }),
    explain: (input) => {
      if (typeof input !== 'object' || input === null || !('source' in input)) throw new WaygateError('WG_USAGE', 'input.source: required here');
      return { echoed: input };
    },
    reload: async () => ({ result: 'unchanged' }),
    setLogLevel: (level) => ({ previous: 'info', level }),
    quit: () => calls.push('quit'),
  };

  before(async () => {
    servers = await startAdminServers({ readyAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0', adminAddress: '127.0.0.1:0', handlers });
  });
  after(() => servers.close());

  const url = (which: 'ready' | 'metrics' | 'admin', path: string): string => `http://${servers.addresses[which]}${path}`;

  test('readiness answers 503 with the reason, then 200', async () => {
    let res = await fetch(url('ready', '/healthz/ready'));
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'not ready: policy_snapshot_not_loaded\n');
    ready = true;
    res = await fetch(url('ready', '/healthz/ready'));
    assert.equal(res.status, 200);
  });

  test('metrics in the Prometheus text format, on /metrics and Istio\'s /stats/prometheus', async () => {
    for (const p of ['/metrics', '/stats/prometheus']) {
      const res = await fetch(url('metrics', p));
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
      assert.equal(await res.text(), '# HELP x y\n# TYPE x counter\nx 1\n');
    }
  });

  test('each port serves only its own paths', async () => {
    assert.equal((await fetch(url('ready', '/metrics'))).status, 404);
    assert.equal((await fetch(url('metrics', '/debug/config'))).status, 404);
    assert.equal((await fetch(url('ready', '/quitquitquit'), { method: 'POST' })).status, 404);
  });

  test('admin routes: methods are enforced, bad input is a 400, levels are validated', async () => {
    assert.equal((await fetch(url('admin', '/debug/config'))).status, 200);
    const wrong = await fetch(url('admin', '/debug/reload'));
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal((await fetch(url('admin', '/nope'))).status, 404);
    const notJson = await fetch(url('admin', '/debug/explain'), { method: 'POST', body: '{' });
    assert.equal(notJson.status, 400);
    const badInput = await fetch(url('admin', '/debug/explain'), { method: 'POST', body: '{"destination":{}}' });
    assert.equal(badInput.status, 400);
    assert.deepEqual(await badInput.json(), { error: 'input.source: required here', code: 'WG_USAGE' });
    const good = await fetch(url('admin', '/debug/explain'), { method: 'POST', body: '{"source":{}}' });
    assert.deepEqual(await good.json(), { echoed: { source: {} } });
    assert.equal((await fetch(url('admin', '/logging?level=loud'), { method: 'POST' })).status, 400);
    const lvl = await fetch(url('admin', '/logging?level=debug'), { method: 'POST' });
    assert.deepEqual(await lvl.json(), { previous: 'info', level: 'debug' });
  });

  test('POST /quitquitquit answers, then starts the drain', async () => {
    const res = await fetch(url('admin', '/quitquitquit'), { method: 'POST' });
    assert.equal(await res.text(), 'draining\n');
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['quit']);
  });

  test('the admin API refuses to bind to a non-loopback address', async () => {
    await assert.rejects(
      startAdminServers({ readyAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0', adminAddress: '0.0.0.0:0', handlers }),
      (err: WaygateError) => err.code === 'WG_CONFIG' && /not loopback/.test(err.message),
    );
  });
});

describe('admin endpoints of a running gateway', () => {
  let t: TestGateway;
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream('echo');
    t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'frontend') } });
  });
  after(async () => {
    await t.close();
    await upstream.close();
  });

  test('/debug/config shows the effective config and certificate facts, never key material', async () => {
    const body = await (await t.http('admin', '/debug/config')).text();
    const view = JSON.parse(body) as { profile: string; config: { tls: { keyFile: string } }; tls: { fingerprint: string; subjectAltName: string } };
    assert.equal(view.profile, 'production');
    assert.equal(view.config.tls.keyFile, t.tls.keyFile);
    assert.match(view.tls.fingerprint, /^[0-9A-F:]{95}$/);
    assert.match(view.tls.subjectAltName, /spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/gateway/);
    assert.doesNotMatch(body, /PRIVATE KEY|BEGIN CERTIFICATE/);
  });

  test('/debug/policy, /debug/connections, /debug/explain, /debug/reload and /metrics agree with the traffic', async () => {
    const policy = (await (await t.http('admin', '/debug/policy')).json()) as { loaded: boolean; version: number; hash: string; policies: { name: string; rules: string[] }[] };
    assert.equal(policy.loaded, true);
    assert.deepEqual(policy.policies.map((p) => [p.name, p.rules]), [['clients', ['frontend']]]);

    const session = await t.connect('frontend');
    const tunnel = await session.openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(tunnel.status, 200);
    const denied = await (await t.connect('other')).openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(denied.status, 401);

    const conns = (await (await t.http('admin', '/debug/connections')).json()) as { tunnels: { source: { principal: string }; destination: { port: number } }[] };
    assert.equal(conns.tunnels.length, 1);
    assert.equal(conns.tunnels[0]!.source.principal, spiffeId('frontend'));
    assert.equal(conns.tunnels[0]!.destination.port, upstream.port);

    const explain = await t.http('admin', '/debug/explain', {
      method: 'POST',
      body: JSON.stringify({ source: { principal: spiffeId('frontend'), ip: '10.0.0.5' }, destination: { ip: '10.0.1.7', port: 8080 } }),
    });
    assert.equal(explain.status, 200);
    const ex = (await explain.json()) as {
      decision: { decision: string; policy: string; rule: string };
      snapshot: { hash: string };
      policies: { name: string; applies: boolean; rules: { name: string; outcome: string }[] }[];
    };
    assert.deepEqual([ex.decision.decision, ex.decision.policy, ex.decision.rule], ['allow', 'clients', 'frontend']);
    assert.equal(ex.snapshot.hash, policy.hash);
    assert.deepEqual(ex.policies.map((p) => [p.name, p.applies, p.rules.map((r) => [r.name, r.outcome])]), [['clients', true, [['frontend', 'match']]]]);
    const badExplain = await t.http('admin', '/debug/explain', { method: 'POST', body: JSON.stringify({ sauce: {} }) });
    assert.equal(badExplain.status, 400);

    const reload = (await (await t.http('admin', '/debug/reload', { method: 'POST' })).json()) as { result: string; trigger: string };
    assert.deepEqual([reload.result, reload.trigger], ['unchanged', 'admin']);
    assert.equal(t.sink.reloads.at(-1)!.trigger, 'admin');

    const fams = new Map(parseMetrics(await (await t.http('metrics', '/metrics')).text()).map((f) => [f.name, f]));
    const sample = (name: string, labels: Record<string, string> = {}): number =>
      Number(fams.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? 0);
    assert.equal(sample('waygate_connect_decisions_total', { decision: 'allow', reason: 'allowed' }), 1);
    assert.equal(sample('waygate_connect_decisions_total', { decision: 'deny', reason: 'no_allow_match' }), 1);
    assert.equal(sample('waygate_tunnels_active'), 1);
    assert.equal(sample('waygate_connections_active'), 2);
    assert.equal(sample('waygate_rule_hits_total', { policy: 'clients', rule: 'frontend', action: 'ALLOW', mode: 'Enforce' }), 1);
    assert.equal(sample('waygate_policy_reloads_total', { result: 'unchanged', trigger: 'admin' }), 1);
    assert.equal(sample('waygate_ready'), 1);
    assert.equal(sample('istio_tcp_connections_opened_total', { reporter: 'destination', source_workload_namespace: 'prod' }), 1);
    assert.ok(sample('waygate_tls_certificate_expiry_timestamp_seconds') > Date.now() / 1000);
    tunnel.stream.close();
  });

  test('no tunnel reaches a side port: a CONNECT to the admin port is a self-call (503)', async () => {
    const port = Number(t.gw.addresses.admin.split(':').at(-1));
    const session = await t.connect('frontend');
    const tunnel = await session.openTunnel(`127.0.0.1:${port}`);
    assert.equal(tunnel.status, 503, 'a tunnel to one of the gateway\'s own ports is a self-call');
  });
});
