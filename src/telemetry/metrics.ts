/**
 * Prometheus metrics (DESIGN §5: `waygate_*` names, base units, `_total` on counters, bounded
 * labels). Every label value comes from a closed set (decision, reason, limit, direction), from the
 * operator-written policy set (policy and rule names), or is capped (namespaces): a peer can never
 * create a series by sending a header or presenting a certificate.
 *
 * Identities stay out of labels (DESIGN §5 "identities belong in the audit log"). Istio's
 * `istio_tcp_*` series are kept for its dashboards, which group by workload *namespace* and filter
 * on `reporter`; the per-principal / per-workload labels Istio also carries are left out: a
 * principal is an identity, and the workload name would come from untrusted baggage. The source
 * namespace is taken only from the verified SPIFFE ID and capped at {@link NAMESPACE_LABEL_CAP}
 * distinct values (then `other`), so its cardinality is bounded even in a large trust domain.
 *
 * Each worker process has its own registry; in workers mode the primary merges them with
 * prom-client's `AggregatorRegistry.aggregate` (counters and histograms summed, gauges as declared).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Decision, Reason, Verdict } from '../policy/decision.ts';
import type { CloseReason, ReloadRecord } from '../audit/record.ts';

/** Distinct source namespaces labelled before further ones become `other`. */
export const NAMESPACE_LABEL_CAP = 128;

/** Limits whose refusals are counted (`waygate_refusals_total{limit}`). */
export type RefusalLimit =
  | 'max_connections'
  | 'max_streams_per_connection'
  | 'max_header_list_size'
  | 'handshake_timeout'
  | 'idle_timeout';

/** Reasons a TLS handshake fails (`waygate_tls_handshake_failures_total{reason}`). */
export type TlsFailureReason =
  | 'no_client_certificate'
  | 'untrusted_certificate'
  | 'expired_certificate'
  | 'invalid_certificate'
  | 'protocol'
  | 'timeout'
  | 'other';

export type ByteDirection = 'received' | 'sent';

export interface MetricsOptions {
  /** The gateway's own workload, for Istio's destination_* labels (Downward API env by default). */
  workload?: { name: string; namespace: string };
  namespaceCap?: number;
}

/** Bounded label value: the first `cap` distinct values pass through, the rest become `other`. */
class CappedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly cap: number) {}
  value(v: string): string {
    if (v === '') return 'unknown';
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.cap) return 'other';
    this.seen.add(v);
    return v;
  }
}

const DECISION_BUCKETS_S = [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];
const CONNECT_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const ISTIO_LABELS = [
  'reporter', 'connection_security_policy', 'source_workload_namespace', 'destination_workload', 'destination_workload_namespace',
] as const;

/** Every metric the gateway exports, on its own registry (never prom-client's global one). */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly namespaces: CappedLabel;
  private readonly workload: { name: string; namespace: string };

  readonly connectionsOpened = new Counter({ name: 'waygate_connections_opened_total', help: 'TLS connections accepted (handshake completed).', registers: [this.registry] });
  readonly connectionsClosed = new Counter({ name: 'waygate_connections_closed_total', help: 'TLS connections closed.', registers: [this.registry] });
  readonly connectionsActive = new Gauge({ name: 'waygate_connections_active', help: 'Open TLS connections.', registers: [this.registry] });
  readonly tunnelsActive = new Gauge({ name: 'waygate_tunnels_active', help: 'Open CONNECT tunnels (allowed and piping bytes).', registers: [this.registry] });
  readonly tunnelsClosed = new Counter({ name: 'waygate_tunnels_closed_total', help: 'Tunnels closed, by close reason.', labelNames: ['reason'], registers: [this.registry] });
  readonly decisions = new Counter({ name: 'waygate_connect_decisions_total', help: 'CONNECT decisions, by verdict and reason.', labelNames: ['decision', 'reason'], registers: [this.registry] });
  readonly ruleHits = new Counter({ name: 'waygate_rule_hits_total', help: 'Rules that decided, matched as AUDIT, or matched in dry run; by policy, rule, action and mode.', labelNames: ['policy', 'rule', 'action', 'mode'], registers: [this.registry] });
  readonly dryRunWouldDeny = new Counter({ name: 'waygate_dry_run_would_deny_total', help: 'Allowed tunnels that enforcing the dry-run policies would have denied, by the dry-run policy that denied.', labelNames: ['policy'], registers: [this.registry] });
  readonly evalErrors = new Counter({ name: 'waygate_rule_eval_errors_total', help: 'Rule evaluations that raised an error (fail-closed applied), by policy and rule.', labelNames: ['policy', 'rule'], registers: [this.registry] });
  readonly decisionDuration = new Histogram({ name: 'waygate_decision_duration_seconds', help: 'Policy evaluation time per CONNECT.', buckets: DECISION_BUCKETS_S, registers: [this.registry] });
  readonly upstreamConnectDuration = new Histogram({ name: 'waygate_upstream_connect_duration_seconds', help: 'Time to connect to the destination, by result.', labelNames: ['result'], buckets: CONNECT_BUCKETS_S, registers: [this.registry] });
  readonly tunnelBytes = new Counter({ name: 'waygate_tunnel_bytes_total', help: 'Tunnel payload bytes; received = from the client toward the destination, sent = back to the client.', labelNames: ['direction'], registers: [this.registry] });
  readonly reloads = new Counter({ name: 'waygate_policy_reloads_total', help: 'Policy loads, by result and trigger.', labelNames: ['result', 'trigger'], registers: [this.registry] });
  readonly reloadClosedTunnels = new Counter({ name: 'waygate_policy_recheck_closed_tunnels_total', help: 'Live tunnels closed because a new snapshot denied them.', registers: [this.registry] });
  readonly snapshotInfo = new Gauge({ name: 'waygate_policy_snapshot_info', help: 'The policy snapshot in force (value 1).', labelNames: ['version', 'hash'], aggregator: 'max', registers: [this.registry] });
  readonly snapshotRules = new Gauge({ name: 'waygate_policy_snapshot_rules', help: 'Rules in the snapshot in force.', aggregator: 'max', registers: [this.registry] });
  readonly snapshotTimestamp = new Gauge({ name: 'waygate_policy_snapshot_timestamp_seconds', help: 'When the snapshot in force was applied (Unix time).', aggregator: 'min', registers: [this.registry] });
  readonly tlsHandshakeFailures = new Counter({ name: 'waygate_tls_handshake_failures_total', help: 'TLS handshakes refused or failed, by reason.', labelNames: ['reason'], registers: [this.registry] });
  readonly tlsMaterialErrors = new Counter({ name: 'waygate_tls_material_errors_total', help: 'Certificate/key/trust-bundle reloads that failed (the previous material stays in use). Alert on any increase.', registers: [this.registry] });
  readonly tlsMaterialReloads = new Counter({ name: 'waygate_tls_material_reloads_total', help: 'Certificate/key/trust-bundle reloads applied.', registers: [this.registry] });
  readonly certificateExpiry = new Gauge({ name: 'waygate_tls_certificate_expiry_timestamp_seconds', help: 'notAfter of the serving certificate in use (Unix time).', aggregator: 'min', registers: [this.registry] });
  readonly refusals = new Counter({ name: 'waygate_refusals_total', help: 'Connections or streams refused by a limit.', labelNames: ['limit'], registers: [this.registry] });
  readonly pingTimeouts = new Counter({ name: 'waygate_h2_ping_timeouts_total', help: 'HTTP/2 connections closed because PINGs went unanswered.', registers: [this.registry] });
  readonly ready = new Gauge({ name: 'waygate_ready', help: '1 when ready to serve (TLS material and a snapshot loaded, not draining).', aggregator: 'min', registers: [this.registry] });

  // Istio's standard TCP metrics (reporter="destination": the gateway terminates the tunnel).
  readonly istioOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Istio standard metric: TCP connections opened (tunnels).', labelNames: ISTIO_LABELS, registers: [this.registry] });
  readonly istioClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Istio standard metric: TCP connections closed (tunnels).', labelNames: ISTIO_LABELS, registers: [this.registry] });
  readonly istioReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Istio standard metric: bytes received from the source.', labelNames: ISTIO_LABELS, registers: [this.registry] });
  readonly istioSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Istio standard metric: bytes sent back to the source.', labelNames: ISTIO_LABELS, registers: [this.registry] });

  constructor(opts: MetricsOptions = {}) {
    this.namespaces = new CappedLabel(opts.namespaceCap ?? NAMESPACE_LABEL_CAP);
    this.workload = opts.workload ?? {
      name: process.env['WAYGATE_WORKLOAD_NAME'] || 'waygate',
      namespace: process.env['POD_NAMESPACE'] || 'unknown',
    };
    this.ready.set(0);
  }

  /** Istio label set for a tunnel whose verified source namespace is `sourceNamespace`. */
  istioLabels(sourceNamespace: string): Record<(typeof ISTIO_LABELS)[number], string> {
    return {
      reporter: 'destination',
      connection_security_policy: 'mutual_tls',
      source_workload_namespace: this.namespaces.value(sourceNamespace),
      destination_workload: this.workload.name,
      destination_workload_namespace: this.workload.namespace,
    };
  }

  /** Records one CONNECT decision (engine verdict or a transport refusal) and its rule hits. */
  recordDecision(verdict: Verdict, reason: Reason, decision: Decision | null): void {
    this.decisions.inc({ decision: verdict, reason });
    if (!decision) return;
    this.decisionDuration.observe(decision.evalMicros / 1e6);
    if (decision.policy !== null && decision.rule !== null) {
      // The deciding rule's action follows from the verdict (Istio's order: DENY rules deny, ALLOW rules allow).
      this.ruleHits.inc({ policy: decision.policy, rule: decision.rule, action: decision.decision === 'deny' ? 'DENY' : 'ALLOW', mode: 'Enforce' });
    }
    for (const a of decision.audit) this.ruleHits.inc({ policy: a.policy, rule: a.rule, action: a.action, mode: a.mode });
    for (const e of decision.evalErrors) this.evalErrors.inc({ policy: e.policy, rule: e.rule });
    const dry = decision.dryRun;
    if (dry) {
      for (const m of dry.matches) this.ruleHits.inc({ policy: m.policy, rule: m.rule, action: m.action, mode: 'DryRun' });
      if (dry.decision === 'deny' && decision.decision === 'allow') this.dryRunWouldDeny.inc({ policy: dry.policy ?? '(default)' });
    }
  }

  tunnelOpened(sourceNamespace: string): void {
    this.tunnelsActive.inc();
    this.istioOpened.inc(this.istioLabels(sourceNamespace));
  }

  /** Adds payload bytes as they flow, so long-lived tunnels show progress between scrapes. */
  tunnelBytesAdded(sourceNamespace: string, direction: ByteDirection, bytes: number): void {
    if (bytes <= 0) return;
    this.tunnelBytes.inc({ direction }, bytes);
    (direction === 'received' ? this.istioReceived : this.istioSent).inc(this.istioLabels(sourceNamespace), bytes);
  }

  tunnelClosed(sourceNamespace: string, reason: CloseReason): void {
    this.tunnelsActive.dec();
    this.tunnelsClosed.inc({ reason });
    this.istioClosed.inc(this.istioLabels(sourceNamespace));
  }

  /** Records a policy load and, when applied, the snapshot now in force. */
  recordReload(
    record: Pick<ReloadRecord, 'result' | 'trigger' | 'snapshot' | 'rules' | 'closedTunnels'>,
    opts: { count?: boolean; nowMs?: number } = {},
  ): void {
    // In workers mode the primary counts each reload once; workers only update the snapshot gauges.
    if (opts.count !== false) this.reloads.inc({ result: record.result, trigger: record.trigger });
    if (record.result !== 'applied') return;
    this.snapshotInfo.reset();
    this.snapshotInfo.set({ version: String(record.snapshot.version), hash: record.snapshot.hash }, 1);
    this.snapshotRules.set(record.rules);
    this.snapshotTimestamp.set((opts.nowMs ?? Date.now()) / 1000);
    if (record.closedTunnels) this.reloadClosedTunnels.inc(record.closedTunnels);
  }

  /** Text exposition of this process's metrics. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * The primary's own series in workers mode: reloads are counted once per reload there (each worker
 * reloads too, but one file change is one reload), plus the worker count. Only metrics the workers
 * never increment live here, so the merge cannot double-count.
 */
export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly reloads = new Counter({ name: 'waygate_policy_reloads_total', help: 'Policy loads, by result and trigger.', labelNames: ['result', 'trigger'], registers: [this.registry] });
  readonly workers = new Gauge({ name: 'waygate_workers', help: 'Worker processes running.', registers: [this.registry] });
  readonly workerRestarts = new Counter({ name: 'waygate_worker_restarts_total', help: 'Worker processes that exited unexpectedly and were replaced.', registers: [this.registry] });
}

/** Merges metric JSON from several processes (workers mode) into one text exposition. */
export async function aggregateMetricsText(parts: Awaited<ReturnType<Registry['getMetricsAsJSON']>>[]): Promise<string> {
  const { AggregatorRegistry } = await import('prom-client');
  return AggregatorRegistry.aggregate(parts).metrics();
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
