import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { AUDIT_SCHEMA_VERSION, type CloseReason, type CloseRecord, type DecisionRecord } from '../../src/audit/record.ts';
import type { Reason } from '../../src/policy/decision.ts';
import { GatewayMetrics } from '../../src/telemetry/metrics.ts';
import { createMetricsObserver } from '../../src/telemetry/observer.ts';

interface Family {
  name: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

/** The per-CONNECT/close counters GatewayMetrics counts through its series caches. */
const CACHED = [
  'waygate_connect_decisions_total', 'waygate_rule_hits_total', 'waygate_rule_eval_errors_total', 'waygate_dry_run_would_deny_total',
  'waygate_tunnels_closed_total', 'waygate_tunnel_bytes_total', 'istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total',
  'istio_tcp_received_bytes_total', 'istio_tcp_sent_bytes_total',
] as const;

/** family -> sorted `k=v,...` label string -> value, for the cached families only. */
function samples(text: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const f of parse(text)) {
    if (!(CACHED as readonly string[]).includes(f.name)) continue;
    const series: Record<string, number> = {};
    for (const m of f.metrics) {
      const key = Object.entries(m.labels ?? {}).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',');
      series[key] = Number(m.value);
    }
    out[f.name] = series;
  }
  return out;
}

/**
 * The same counters counted the uncached way: prom-client `inc(labels)` per event, following the
 * documented semantics (docs/design.md §5) rather than GatewayMetrics' code.
 */
class Reference {
  readonly registry = new Registry();
  private readonly c = (name: string, labelNames: string[]): Counter<string> => new Counter({ name, help: name, labelNames, registers: [this.registry] });
  private readonly istioNames = ['reporter', 'connection_security_policy', 'source_workload_namespace', 'destination_workload', 'destination_workload_namespace'];
  readonly decisions = this.c('waygate_connect_decisions_total', ['decision', 'reason']);
  readonly ruleHits = this.c('waygate_rule_hits_total', ['policy', 'rule', 'action', 'mode']);
  readonly evalErrors = this.c('waygate_rule_eval_errors_total', ['policy', 'rule']);
  readonly dryRun = this.c('waygate_dry_run_would_deny_total', ['policy']);
  readonly closed = this.c('waygate_tunnels_closed_total', ['reason']);
  readonly bytes = this.c('waygate_tunnel_bytes_total', ['direction', 'protocol']);
  readonly istioOpened = this.c('istio_tcp_connections_opened_total', this.istioNames);
  readonly istioClosed = this.c('istio_tcp_connections_closed_total', this.istioNames);
  readonly istioReceived = this.c('istio_tcp_received_bytes_total', this.istioNames);
  readonly istioSent = this.c('istio_tcp_sent_bytes_total', this.istioNames);
  private readonly open = new Map<string, string>();

  private istio(ns: string): Record<string, string> {
    return { reporter: 'destination', connection_security_policy: 'mutual_tls', source_workload_namespace: ns, destination_workload: 'waygate', destination_workload_namespace: 'mesh' };
  }

  decision(r: DecisionRecord): void {
    this.decisions.inc({ decision: r.decision, reason: r.reason });
    const engineReason = ENGINE.has(r.reason);
    if (engineReason || r.policy !== null || r.evalMicros > 0) {
      const engineVerdict = engineReason ? r.decision : 'allow';
      if (r.policy !== null && r.rule !== null) this.ruleHits.inc({ policy: r.policy, rule: r.rule, action: engineVerdict === 'deny' ? 'DENY' : 'ALLOW', mode: 'Enforce' });
      for (const a of r.audit) this.ruleHits.inc({ policy: a.policy, rule: a.rule, action: a.action, mode: a.mode });
      for (const e of r.evalErrors) this.evalErrors.inc({ policy: e.policy, rule: e.rule });
      if (r.dryRun) {
        for (const m of r.dryRun.matches) this.ruleHits.inc({ policy: m.policy, rule: m.rule, action: m.action, mode: 'DryRun' });
        if (r.dryRun.decision === 'deny' && engineVerdict === 'allow') this.dryRun.inc({ policy: r.dryRun.policy ?? '(default)' });
      }
    }
    if (r.status === 200) {
      this.open.set(r.decisionId, r.source.namespace);
      this.istioOpened.inc(this.istio(r.source.namespace));
    }
  }

  close(r: CloseRecord): void {
    const ns = this.open.get(r.decisionId) ?? r.source.namespace;
    if (r.bytesReceived > 0) {
      this.bytes.inc({ direction: 'received', protocol: 'tcp' }, r.bytesReceived);
      this.istioReceived.inc(this.istio(ns), r.bytesReceived);
    }
    if (r.bytesSent > 0) {
      this.bytes.inc({ direction: 'sent', protocol: 'tcp' }, r.bytesSent);
      this.istioSent.inc(this.istio(ns), r.bytesSent);
    }
    this.closed.inc({ reason: r.closeReason });
    if (this.open.delete(r.decisionId)) this.istioClosed.inc(this.istio(ns));
  }
}

const ENGINE = new Set<Reason>(['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error']);
const REASONS: Reason[] = ['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error', 'no_identity', 'bad_request', 'destination_not_allowed', 'upstream_failed', 'draining'];
const CLOSE_REASONS: CloseReason[] = ['completed', 'client_reset', 'upstream_reset', 'upstream_failed', 'idle_timeout'];
const NAMESPACES = ['prod', 'dev', 'staging', 'batch'];

function decisionRecord(i: number, names: string): DecisionRecord {
  const reason = REASONS[i % REASONS.length]!;
  const allow = reason === 'allowed' || reason === 'default_allow';
  const policy = i % 7 === 0 ? null : `${names}-p${i % 3}`;
  return {
    schema: AUDIT_SCHEMA_VERSION, event: 'decision', time: new Date(0).toISOString(), decisionId: `d${i}`, connectionId: 'c1', streamId: i * 2 + 1,
    decision: allow ? 'allow' : 'deny', reason, status: allow ? 200 : reason === 'upstream_failed' ? 503 : 401,
    policy, rule: policy === null ? null : `r${i % 2}`,
    dryRun: i % 4 === 0 ? { decision: i % 8 === 0 ? 'deny' : 'allow', reason: 'explicit_deny', policy: i % 3 === 0 ? null : `${names}-dry`, rule: 'd', wouldChange: true, matches: [{ policy: `${names}-dry`, rule: 'd', action: 'DENY', mode: 'DryRun' }] } : null,
    audit: i % 5 === 0 ? [{ policy: `${names}-audit`, rule: 'all', action: 'AUDIT', mode: 'Enforce' }] : [],
    evalErrors: reason === 'eval_error' ? [{ policy: `${names}-p1`, rule: 'broken', message: 'no such key' }] : [],
    snapshot: { version: 1, hash: 'h' },
    source: { principal: 'spiffe://cluster.local/ns/x/sa/y', trustDomain: 'cluster.local', namespace: NAMESPACES[i % NAMESPACES.length]!, serviceAccount: 'y', ip: '10.0.0.5', port: 40000 },
    destination: { authority: '10.0.1.7:8080', ip: '10.0.1.7', port: 8080, host: '', service: '', namespace: '', workload: '', principal: '' },
    traceId: '', headers: {}, baggage: {}, connection: { id: 'c1', tlsVersion: 'TLSv1.3' },
    evalMicros: i % 3 === 0 ? 0 : 5 + (i % 11),
  };
}

function closeRecord(i: number): CloseRecord {
  return {
    schema: AUDIT_SCHEMA_VERSION, event: 'close', time: new Date(0).toISOString(), decisionId: `d${i}`, connectionId: 'c1', streamId: i * 2 + 1,
    source: { principal: 'spiffe://cluster.local/ns/x/sa/y', trustDomain: 'cluster.local', namespace: 'other-ns', serviceAccount: 'y', ip: '10.0.0.5', port: 40000 },
    destination: { authority: '10.0.1.7:8080', ip: '10.0.1.7', port: 8080, host: '', service: '', namespace: '', workload: '', principal: '' },
    bytesSent: i % 6 === 0 ? 0 : 100 + i, bytesReceived: 10 + (i % 13), durationMs: 5, closeReason: CLOSE_REASONS[i % CLOSE_REASONS.length]!,
  };
}

describe('metrics series caches', () => {
  test('after many decisions and closes the cached counters equal inc(labels) counting, at every scrape', async () => {
    const metrics = new GatewayMetrics({ workload: { name: 'waygate', namespace: 'mesh' } });
    const obs = createMetricsObserver(metrics);
    const ref = new Reference();
    for (let i = 0; i < 3_000; i++) {
      const d = decisionRecord(i, 'v1');
      obs.decision!(d);
      ref.decision(d);
      // Closes trail the decisions; some decision ids never answered 200 (their close counts only the reason).
      if (i >= 5) {
        const c = closeRecord(i - 5);
        obs.tunnelClosed!(c);
        ref.close(c);
      }
      // Scrapes in between: counts pending at a scrape must land exactly once.
      if (i % 997 === 0) assert.deepEqual(samples(await metrics.text()), samples(await ref.registry.metrics()), `scrape after ${i + 1} decisions`);
    }
    const got = samples(await metrics.text());
    assert.deepEqual(got, samples(await ref.registry.metrics()));
    assert.ok(Object.keys(got['waygate_rule_hits_total']!).length >= 8, 'the table exercises many rule-hit series');
    assert.ok((got['waygate_dry_run_would_deny_total']!['policy=(default)'] ?? 0) > 0, 'and the default dry-run policy label');
    // A second scrape with nothing new in between reports the same values (nothing counted twice).
    assert.deepEqual(samples(await metrics.text()), got);
    // The workers-mode path (getMetricsAsJSON, merged by the primary) collects the pending counts too.
    obs.decision!(decisionRecord(1, 'v1')); // reason default_allow
    const json = await metrics.registry.getMetricsAsJSON();
    const decisions = json.find((m) => m.name === 'waygate_connect_decisions_total')!;
    const allowed = decisions.values.find((v) => v.labels['decision'] === 'allow' && v.labels['reason'] === 'default_allow');
    assert.equal(allowed?.value, (got['waygate_connect_decisions_total']!['decision=allow,reason=default_allow'] ?? 0) + 1);
  });

  test('an applied snapshot clears the rule-hit caches (bounded by the policy set in force); counted values stay', async () => {
    const metrics = new GatewayMetrics({ workload: { name: 'waygate', namespace: 'mesh' } });
    const obs = createMetricsObserver(metrics);
    for (let i = 0; i < 200; i++) obs.decision!(decisionRecord(i, 'v1'));
    const before = metrics.cachedSeries();
    assert.ok(before.ruleHits > 0 && before.evalErrors > 0 && before.dryRunWouldDeny > 0, JSON.stringify(before));
    const v1 = samples(await metrics.text());

    // A rejected load changes nothing in force: the caches stay.
    metrics.recordReload({ result: 'rejected', trigger: 'watch', snapshot: { version: 2, hash: '' }, rules: 3 });
    assert.deepEqual(metrics.cachedSeries(), before);

    for (let i = 0; i < 10; i++) obs.decision!(decisionRecord(i, 'v1')); // pending at the swap: must not be lost
    metrics.recordReload({ result: 'applied', trigger: 'watch', snapshot: { version: 3, hash: 'b' }, rules: 3, closedTunnels: 0 });
    const after = metrics.cachedSeries();
    assert.deepEqual({ ruleHits: after.ruleHits, evalErrors: after.evalErrors, dryRunWouldDeny: after.dryRunWouldDeny }, { ruleHits: 0, evalErrors: 0, dryRunWouldDeny: 0 });
    assert.equal(after.istioNamespaces, before.istioNamespaces, 'namespace series do not depend on the policy set');

    const ref = new Reference();
    for (let i = 0; i < 200; i++) ref.decision(decisionRecord(i, 'v1'));
    for (let i = 0; i < 10; i++) ref.decision(decisionRecord(i, 'v1'));
    const swapped = samples(await metrics.text());
    assert.deepEqual(swapped, samples(await ref.registry.metrics()), 'counts pending at the swap were kept');
    assert.ok(swapped['waygate_rule_hits_total']!['action=ALLOW,mode=Enforce,policy=v1-p1,rule=r1']! > v1['waygate_rule_hits_total']!['action=ALLOW,mode=Enforce,policy=v1-p1,rule=r1']!);

    // New names after the swap: the cache holds only those, the old series keep their values.
    for (let i = 0; i < 200; i++) {
      obs.decision!(decisionRecord(i, 'v2'));
      ref.decision(decisionRecord(i, 'v2'));
    }
    assert.equal(metrics.cachedSeries().ruleHits, before.ruleHits, 'the same shape of policy set, renamed');
    assert.deepEqual(samples(await metrics.text()), samples(await ref.registry.metrics()));
  });
});
