import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { AUDIT_SCHEMA_VERSION, type CloseRecord, type DecisionRecord } from '../../src/audit/record.ts';
import { createOpsLogger, setLogLevel } from '../../src/telemetry/log.ts';
import { aggregateMetricsText, GatewayMetrics, PrimaryMetrics } from '../../src/telemetry/metrics.ts';
import { createMetricsObserver } from '../../src/telemetry/observer.ts';

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; count?: string; sum?: string; buckets?: Record<string, string> }[];
}
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

function families(text: string): Map<string, Family> {
  return new Map(parse(text).map((f) => [f.name, f]));
}

/** The value of the sample of `name` whose labels include `labels` (0 when absent). */
function value(fams: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const fam = fams.get(name);
  assert.ok(fam, `metric ${name} is exported`);
  const m = fam.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return m ? Number(m.value ?? m.count) : 0;
}

const source = { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'frontend', ip: '10.0.0.5', port: 40000 };
const destination = { authority: '10.0.1.7:8080', ip: '10.0.1.7', port: 8080, host: '', service: '', namespace: '', workload: '', principal: '' };

function decisionRecord(over: Partial<DecisionRecord>): DecisionRecord {
  return {
    schema: AUDIT_SCHEMA_VERSION, event: 'decision', time: new Date(0).toISOString(), decisionId: 'd1', connectionId: 'c1', streamId: 1,
    decision: 'allow', reason: 'allowed', status: 200, policy: 'api', rule: 'frontend', dryRun: null, audit: [], evalErrors: [],
    snapshot: { version: 1, hash: 'h' }, source, destination, traceId: '', headers: {}, baggage: {}, connection: { id: 'c1', tlsVersion: 'TLSv1.3' },
    evalMicros: 12, ...over,
  };
}

function closeRecord(over: Partial<CloseRecord>): CloseRecord {
  return {
    schema: AUDIT_SCHEMA_VERSION, event: 'close', time: new Date(0).toISOString(), decisionId: 'd1', connectionId: 'c1', streamId: 1,
    source, destination, bytesSent: 300, bytesReceived: 100, durationMs: 5, closeReason: 'completed', ...over,
  };
}

describe('metrics', () => {
  test('observer events become waygate_* and istio_tcp_* series with bounded labels', async () => {
    const metrics = new GatewayMetrics({ workload: { name: 'waygate', namespace: 'mesh' } });
    const obs = createMetricsObserver(metrics);
    obs.connectionOpened!({ connectionId: 'c1', tlsVersion: 'TLSv1.3', hasIdentity: true });
    obs.handshakeFailed!('untrusted');
    obs.handshakeFailed!('expired');
    obs.handshakeFailed!('timeout');
    obs.decision!(decisionRecord({
      decisionId: 'd1',
      audit: [{ policy: 'db-audit', rule: 'all', action: 'AUDIT', mode: 'Enforce' }],
      dryRun: { decision: 'deny', reason: 'explicit_deny', policy: 'lockdown', rule: 'r', wouldChange: true, matches: [{ policy: 'lockdown', rule: 'r', action: 'DENY', mode: 'DryRun' }] },
    }));
    obs.upstreamConnected!(2, { protocol: 'tcp', principal: '', reused: false });
    obs.decision!(decisionRecord({ decisionId: 'd2', decision: 'deny', reason: 'explicit_deny', status: 401, policy: 'deny-dev', rule: 'dev' }));
    obs.decision!(decisionRecord({ decisionId: 'd3', decision: 'deny', reason: 'destination_not_allowed', status: 401, policy: null, rule: null, evalMicros: 0 }));
    obs.decision!(decisionRecord({ decisionId: 'd4', decision: 'deny', reason: 'upstream_failed', status: 503 }));
    obs.upstreamFailed!('refused', 1, 'tcp');
    obs.tunnelClosed!(closeRecord({ decisionId: 'd4', closeReason: 'upstream_failed', bytesSent: 0, bytesReceived: 0 }));
    obs.refused('max_streams_per_connection');
    let fams = families(await metrics.text());
    assert.equal(value(fams, 'waygate_connections_active'), 1);
    assert.equal(value(fams, 'waygate_tunnels_active'), 1, 'only the 200 counts as an open tunnel');
    assert.equal(value(fams, 'waygate_connect_decisions_total', { decision: 'allow', reason: 'allowed' }), 1);
    assert.equal(value(fams, 'waygate_connect_decisions_total', { decision: 'deny', reason: 'explicit_deny' }), 1);
    assert.equal(value(fams, 'waygate_connect_decisions_total', { decision: 'deny', reason: 'destination_not_allowed' }), 1);
    // d1 and d4 (allowed by the rule, then the dial failed) both hit it.
    assert.equal(value(fams, 'waygate_rule_hits_total', { policy: 'api', rule: 'frontend', action: 'ALLOW', mode: 'Enforce' }), 2);
    assert.equal(value(fams, 'waygate_rule_hits_total', { policy: 'deny-dev', rule: 'dev', action: 'DENY', mode: 'Enforce' }), 1);
    assert.equal(value(fams, 'waygate_rule_hits_total', { policy: 'db-audit', rule: 'all', action: 'AUDIT' }), 1);
    assert.equal(value(fams, 'waygate_rule_hits_total', { policy: 'lockdown', rule: 'r', mode: 'DryRun' }), 1);
    assert.equal(value(fams, 'waygate_dry_run_would_deny_total', { policy: 'lockdown' }), 1);
    assert.equal(value(fams, 'waygate_decision_duration_seconds'), 3, 'decisions the engine took part in (d3 was refused before policy)');
    // parse-prometheus-text-format drops the labels of labelled histograms; read those lines directly.
    const text = await metrics.text();
    assert.match(text, /^waygate_upstream_connect_duration_seconds_count\{result="ok",protocol="tcp",reused="false"\} 1$/m);
    assert.match(text, /^waygate_upstream_connect_duration_seconds_count\{result="refused",protocol="tcp",reused="false"\} 1$/m);
    assert.equal(value(fams, 'waygate_tls_handshake_failures_total', { reason: 'untrusted_certificate' }), 1);
    assert.equal(value(fams, 'waygate_tls_handshake_failures_total', { reason: 'expired_certificate' }), 1);
    assert.equal(value(fams, 'waygate_refusals_total', { limit: 'handshake_timeout' }), 1);
    assert.equal(value(fams, 'waygate_refusals_total', { limit: 'max_streams_per_connection' }), 1);
    assert.equal(value(fams, 'waygate_tunnels_closed_total', { reason: 'upstream_failed' }), 1);

    obs.tunnelClosed!(closeRecord({ decisionId: 'd1' }));
    obs.connectionClosed!({ connectionId: 'c1', durationMs: 10, streams: 4 });
    fams = families(await metrics.text());
    assert.equal(value(fams, 'waygate_tunnels_active'), 0);
    assert.equal(value(fams, 'waygate_connections_active'), 0);
    assert.equal(value(fams, 'waygate_tunnel_bytes_total', { direction: 'received', protocol: 'tcp' }), 100);
    assert.equal(value(fams, 'waygate_tunnel_bytes_total', { direction: 'sent', protocol: 'tcp' }), 300);
    const istio = { reporter: 'destination', source_workload_namespace: 'prod', destination_workload: 'waygate', destination_workload_namespace: 'mesh', connection_security_policy: 'mutual_tls' };
    assert.equal(value(fams, 'istio_tcp_connections_opened_total', istio), 1);
    assert.equal(value(fams, 'istio_tcp_connections_closed_total', istio), 1);
    assert.equal(value(fams, 'istio_tcp_received_bytes_total', istio), 100);
    assert.equal(value(fams, 'istio_tcp_sent_bytes_total', istio), 300);

    // No identity ever becomes a label value.
    for (const fam of fams.values()) {
      for (const m of fam.metrics) {
        for (const v of Object.values(m.labels ?? {})) assert.ok(!v.startsWith('spiffe://'), `${fam.name} labels a principal`);
      }
    }
  });

  test('source namespaces are capped: further ones become "other"', async () => {
    const metrics = new GatewayMetrics({ namespaceCap: 2 });
    for (const ns of ['a', 'b', 'c', 'd', 'a']) metrics.tunnelOpened(ns);
    const fams = families(await metrics.text());
    const series = fams.get('istio_tcp_connections_opened_total')!.metrics.map((m) => [m.labels!['source_workload_namespace'], Number(m.value)]);
    assert.deepEqual(series.sort(), [['a', 2], ['b', 1], ['other', 2]]);
  });

  test('reloads: result/trigger counters and the snapshot info series (one at a time)', async () => {
    const metrics = new GatewayMetrics();
    metrics.recordReload({ result: 'applied', trigger: 'startup', snapshot: { version: 1, hash: 'aaa' }, rules: 3, closedTunnels: 0 }, { nowMs: 1_000 });
    metrics.recordReload({ result: 'rejected', trigger: 'watch', snapshot: { version: 2, hash: '' }, rules: 3 });
    metrics.recordReload({ result: 'applied', trigger: 'admin', snapshot: { version: 3, hash: 'bbb' }, rules: 4, closedTunnels: 2 }, { nowMs: 2_000 });
    const fams = families(await metrics.text());
    assert.equal(value(fams, 'waygate_policy_reloads_total', { result: 'applied', trigger: 'startup' }), 1);
    assert.equal(value(fams, 'waygate_policy_reloads_total', { result: 'rejected', trigger: 'watch' }), 1);
    assert.deepEqual(fams.get('waygate_policy_snapshot_info')!.metrics.map((m) => m.labels), [{ version: '3', hash: 'bbb' }]);
    assert.equal(value(fams, 'waygate_policy_snapshot_rules'), 4);
    assert.equal(value(fams, 'waygate_policy_recheck_closed_tunnels_total'), 2);
    assert.equal(value(fams, 'waygate_policy_snapshot_timestamp_seconds'), 2);
  });

  test('workers mode: registries merge (counters summed, gauges by their aggregator)', async () => {
    const w1 = new GatewayMetrics();
    const w2 = new GatewayMetrics();
    const primary = new PrimaryMetrics();
    w1.decisions.inc({ decision: 'allow', reason: 'allowed' }, 2);
    w2.decisions.inc({ decision: 'allow', reason: 'allowed' }, 3);
    w1.certificateExpiry.set(2000);
    w2.certificateExpiry.set(1000);
    w1.ready.set(1);
    w2.ready.set(0);
    w1.tunnelsActive.set(4);
    w2.tunnelsActive.set(5);
    primary.reloads.inc({ result: 'applied', trigger: 'watch' });
    const text = await aggregateMetricsText([
      await primary.registry.getMetricsAsJSON(), await w1.registry.getMetricsAsJSON(), await w2.registry.getMetricsAsJSON(),
    ]);
    const fams = families(text);
    assert.equal(value(fams, 'waygate_connect_decisions_total', { decision: 'allow', reason: 'allowed' }), 5);
    assert.equal(value(fams, 'waygate_tunnels_active'), 9);
    assert.equal(value(fams, 'waygate_tls_certificate_expiry_timestamp_seconds'), 1000, 'the earliest expiry');
    assert.equal(value(fams, 'waygate_ready'), 0, 'ready only when every worker is');
    assert.equal(value(fams, 'waygate_policy_reloads_total', { result: 'applied', trigger: 'watch' }), 1, 'one reload, counted once');
  });
});

describe('operational log', () => {
  test('JSON lines whose level can change at runtime', () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const log = createOpsLogger({ level: 'info', destination: sink, base: { worker: 3 } });
    log.debug('hidden');
    log.info({ a: 1 }, 'shown');
    assert.equal(setLogLevel(log, 'debug'), 'info');
    log.debug('now shown');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(parsed.map((p) => [p['level'], p['msg'], p['worker']]), [['info', 'shown', 3], ['debug', 'now shown', 3]]);
    assert.equal(parsed[0]!['a'], 1);
  });
});
