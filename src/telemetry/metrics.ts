/**
 * Prometheus metrics (docs/design.md §5: `waygate_*` names, base units, `_total` on counters, bounded
 * labels). Every label value comes from a closed set (decision, reason, limit, direction), from the
 * operator-written policy set (policy and rule names), or is capped (namespaces): a peer can never
 * create a series by sending a header or presenting a certificate.
 *
 * Identities stay out of labels (docs/design.md §5 "Metrics"). Istio's
 * `istio_tcp_*` series are kept for its dashboards, which group by workload *namespace* and filter
 * on `reporter`; the per-principal / per-workload labels Istio also carries are left out: a
 * principal is an identity, and the workload name would come from untrusted baggage. The source
 * namespace is taken only from the verified SPIFFE ID and capped at {@link NAMESPACE_LABEL_CAP}
 * distinct values (then `other`), so its cardinality is bounded even in a large trust domain.
 *
 * Each worker process has its own registry; in workers mode the primary merges them with
 * prom-client's `AggregatorRegistry.aggregate` (counters and histograms summed, gauges as declared).
 *
 * The counters bumped on every CONNECT and close (decisions, rule hits, tunnel closes and bytes,
 * `istio_tcp_*`) do not go through prom-client's `inc(labels)` on the data path: that hashes and
 * validates the label object on every call, and prom-client 15's `labels(...)` children do the
 * same (they only bind the object). Each series is instead a cached {@link PendingSeries} found by a
 * cheap string key, counted in a plain number and added to its counter when the registry collects
 * (`collect`, run on every scrape and on `getMetricsAsJSON`), so the exposition is unchanged.
 */
import { Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client';
import type { DryRunOutcome, Reason, RuleRef, Verdict } from '../policy/decision.ts';
import type { CloseReason, MeshReloadRecord, ReloadRecord } from '../audit/record.ts';
import type { AuditHealth } from '../audit/sink.ts';

/** Distinct source namespaces labelled before further ones become `other`. */
export const NAMESPACE_LABEL_CAP = 128;

/** Limits whose refusals are counted (`waygate_refusals_total{limit}`). */
export type RefusalLimit =
  | 'max_connections'
  | 'max_streams_per_connection'
  | 'max_pending_dials'
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
  /**
   * Istio's `reporter` label: `destination` when the gateway is where tunnels end (it dials the
   * `:authority`), `waypoint` when it sends them on to mesh endpoints (discovery configured), as
   * Istio's waypoints report: a destination ztunnel then reports the same traffic as `destination`
   * and dashboards (Kiali) do not count it twice. In `waypoint` mode `destination_workload` and
   * `destination_workload_namespace` name the endpoint the tunnel went to (from discovery, never
   * from a header), capped like the source namespace.
   */
  reporter?: 'destination' | 'waypoint';
}

/** Where a tunnel went, for Istio's destination_* labels in `waypoint` mode. */
export interface IstioDestination {
  readonly namespace: string;
  readonly workload: string;
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

/** One labelled series of a counter: its label object, built once, and the count not yet collected. */
interface PendingSeries {
  readonly labels: LabelValues<string>;
  pending: number;
}

/**
 * The cached series of one counter, keyed by a string the caller builds from the label values
 * (cheaper than prom-client hashing a label object). Counts land in the counter on {@link flush}.
 * Bounded: every key comes from a closed set, the capped namespace label, or the policy set in
 * force (those caches are {@link clear}ed when a snapshot is applied).
 */
class SeriesCache {
  private readonly series = new Map<string, PendingSeries>();
  constructor(private readonly counter: Counter<string>) {}

  /** The cached series for `key`, if any (`find(k) ?? add(k, labels)`: no allocation on a hit). */
  find(key: string): PendingSeries | undefined {
    return this.series.get(key);
  }

  /** Caches a new series. Counts reach the counter in order of first use, as with `inc(labels)`. */
  add(key: string, labels: LabelValues<string>): PendingSeries {
    const s: PendingSeries = { labels, pending: 0 };
    this.series.set(key, s);
    return s;
  }

  /** Adds the pending counts to the counter (prom-client calls this before reading it). */
  flush(): void {
    for (const s of this.series.values()) {
      if (s.pending === 0) continue;
      this.counter.inc(s.labels, s.pending);
      s.pending = 0;
    }
  }

  /** Flushes, then forgets every series (their values stay in the counter). */
  clear(): void {
    this.flush();
    this.series.clear();
  }

  /** Cached series (tests check the caches stay bounded). */
  get size(): number {
    return this.series.size;
  }
}

type IstioCounter = 'opened' | 'closed' | 'received' | 'sent';

/**
 * Istio's TCP series of one (capped) source namespace. Each is created on its first use, not all
 * four at once, so series reach each counter in the order `inc(labels)` would have created them.
 */
type IstioSeries = { readonly labels: LabelValues<string> } & Record<IstioCounter, PendingSeries | null>;

/**
 * What the decision metrics read. A {@link DecisionRecord} (src/audit/record.ts) fits as is, so the
 * observer passes the audit record without building an engine `Decision` per CONNECT.
 */
export interface DecisionFacts {
  readonly decision: Verdict;
  readonly reason: Reason;
  /** The deciding policy and rule; on a transport refusal after an allow, the allowing ones. */
  readonly policy: string | null;
  readonly rule: string | null;
  readonly audit: readonly RuleRef[];
  readonly dryRun: DryRunOutcome | null;
  readonly evalErrors: readonly { readonly policy: string; readonly rule: string }[];
  /** 0 when policy never ran (bad_request, no_identity, refusals before evaluation). */
  readonly evalMicros: number;
}

/** Reasons only the engine returns; any other is the transport's (docs/design.md §4). */
const ENGINE_REASONS: ReadonlySet<Reason> = new Set<Reason>(['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error']);

/** Key separator: NUL cannot occur in a Kubernetes object name, so policy/rule keys never collide. */
const SEP = '\u0000';

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
  readonly tunnelsClosed = new Counter({ name: 'waygate_tunnels_closed_total', help: 'Tunnels closed, by close reason.', labelNames: ['reason'], registers: [this.registry], collect: (): void => this.closeSeries.flush() });
  readonly decisions = new Counter({ name: 'waygate_connect_decisions_total', help: 'CONNECT decisions, by verdict and reason.', labelNames: ['decision', 'reason'], registers: [this.registry], collect: (): void => this.decisionSeries.flush() });
  readonly ruleHits = new Counter({ name: 'waygate_rule_hits_total', help: 'Rules that decided, matched as AUDIT, or matched in dry run; by policy, rule, action and mode.', labelNames: ['policy', 'rule', 'action', 'mode'], registers: [this.registry], collect: (): void => this.ruleHitSeries.flush() });
  readonly dryRunWouldDeny = new Counter({ name: 'waygate_dry_run_would_deny_total', help: 'Allowed tunnels that enforcing the dry-run policies would have denied, by the dry-run policy that denied.', labelNames: ['policy'], registers: [this.registry], collect: (): void => this.dryRunSeries.flush() });
  readonly evalErrors = new Counter({ name: 'waygate_rule_eval_errors_total', help: 'Rule evaluations that raised an error (fail-closed applied), by policy and rule.', labelNames: ['policy', 'rule'], registers: [this.registry], collect: (): void => this.evalErrorSeries.flush() });
  readonly decisionDuration = new Histogram({ name: 'waygate_decision_duration_seconds', help: 'Policy evaluation time per CONNECT.', buckets: DECISION_BUCKETS_S, registers: [this.registry] });
  readonly upstreamConnectDuration = new Histogram({ name: 'waygate_upstream_connect_duration_seconds', help: 'Time to reach the destination (TCP connect; for HBONE until its 200, a pooled connection reused or not), by result (ok or the failure kind), protocol and reuse.', labelNames: ['result', 'protocol', 'reused'], buckets: CONNECT_BUCKETS_S, registers: [this.registry] });
  readonly tunnelBytes = new Counter({ name: 'waygate_tunnel_bytes_total', help: 'Tunnel payload bytes; received = from the client toward the destination, sent = back to the client; by the protocol of the upstream (hbone, tcp).', labelNames: ['direction', 'protocol'], registers: [this.registry], collect: (): void => this.byteSeries.flush() });
  // Discovery (src/discovery/): the mesh file's loads and the snapshot in force.
  readonly meshReloads = new Counter({ name: 'waygate_discovery_reloads_total', help: 'Discovery (mesh file) loads, by result and trigger. Alert on rejected: the last good snapshot stays in force.', labelNames: ['result', 'trigger'], registers: [this.registry] });
  readonly meshSnapshotInfo = new Gauge({ name: 'waygate_discovery_snapshot_info', help: 'The discovery snapshot in force (value 1).', labelNames: ['version', 'hash'], aggregator: 'max', registers: [this.registry] });
  readonly meshServices = new Gauge({ name: 'waygate_discovery_services', help: 'Services in the discovery snapshot in force.', aggregator: 'max', registers: [this.registry] });
  readonly meshWorkloads = new Gauge({ name: 'waygate_discovery_workloads', help: 'Workloads in the discovery snapshot in force.', aggregator: 'max', registers: [this.registry] });
  // The HBONE upstream pool (src/upstream/hbone-pool.ts).
  readonly upstreamPoolConnections = new Gauge({ name: 'waygate_upstream_pool_connections', help: 'Pooled HTTP/2 connections to destination ztunnels (HBONE upstream).', registers: [this.registry] });
  readonly upstreamPoolStreams = new Gauge({ name: 'waygate_upstream_pool_streams', help: 'Open CONNECT streams on pooled HBONE upstream connections.', registers: [this.registry] });
  readonly upstreamPoolClosed = new Counter({ name: 'waygate_upstream_pool_connections_closed_total', help: 'Pooled HBONE upstream connections closed, by reason (idle, goaway, error, ping_timeout, drain, closed).', labelNames: ['reason'], registers: [this.registry] });
  readonly upstreamHandshakeFailures = new Counter({ name: 'waygate_upstream_handshake_failures_total', help: 'HBONE upstream connections that failed before carrying a stream, by kind (identity = the destination presented another SPIFFE ID).', labelNames: ['kind'], registers: [this.registry] });
  readonly upstreamConnectFailures = new Counter({ name: 'waygate_upstream_connect_failures_total', help: 'CONNECTs the destination ztunnel refused on an open HBONE connection, by kind (denied = 401/403 from its own policy).', labelNames: ['kind'], registers: [this.registry] });
  readonly reloads = new Counter({ name: 'waygate_policy_reloads_total', help: 'Policy loads, by result and trigger.', labelNames: ['result', 'trigger'], registers: [this.registry] });
  readonly reloadErrors = reloadErrorsCounter(this.registry);
  readonly reloadClosedTunnels = new Counter({ name: 'waygate_policy_recheck_closed_tunnels_total', help: 'Live tunnels closed because a new snapshot denied them.', registers: [this.registry] });
  readonly snapshotInfo = new Gauge({ name: 'waygate_policy_snapshot_info', help: 'The policy snapshot in force (value 1).', labelNames: ['version', 'hash'], aggregator: 'max', registers: [this.registry] });
  readonly snapshotRules = new Gauge({ name: 'waygate_policy_snapshot_rules', help: 'Rules in the snapshot in force.', aggregator: 'max', registers: [this.registry] });
  readonly snapshotTimestamp = new Gauge({ name: 'waygate_policy_snapshot_timestamp_seconds', help: 'When the snapshot in force was applied (Unix time).', aggregator: 'min', registers: [this.registry] });
  readonly tlsHandshakeFailures = new Counter({ name: 'waygate_tls_handshake_failures_total', help: 'TLS handshakes refused or failed, by reason.', labelNames: ['reason'], registers: [this.registry] });
  readonly tlsMaterialErrors = new Counter({ name: 'waygate_tls_material_errors_total', help: 'Certificate/key/trust-bundle reloads, or mesh CA renewals, that failed (the previous material stays in use). Alert on any increase.', registers: [this.registry] });
  readonly tlsMaterialReloads = new Counter({ name: 'waygate_tls_material_reloads_total', help: 'Certificate/key/trust-bundle reloads, or mesh CA renewals, applied.', registers: [this.registry] });
  readonly certificateExpiry = new Gauge({ name: 'waygate_tls_certificate_expiry_timestamp_seconds', help: 'notAfter of the serving certificate in use (Unix time).', aggregator: 'min', registers: [this.registry] });
  readonly refusals = new Counter({ name: 'waygate_refusals_total', help: 'Connections or streams refused by a limit.', labelNames: ['limit'], registers: [this.registry] });
  readonly pingTimeouts = new Counter({ name: 'waygate_h2_ping_timeouts_total', help: 'HTTP/2 connections closed because PINGs went unanswered.', registers: [this.registry] });
  readonly ready = new Gauge({ name: 'waygate_ready', help: '1 when ready to serve (TLS material and a snapshot loaded, not draining).', aggregator: 'min', registers: [this.registry] });

  // Istio's standard TCP metrics (reporter="destination": the gateway terminates the tunnel).
  readonly istioOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Istio standard metric: TCP connections opened (tunnels).', labelNames: ISTIO_LABELS, registers: [this.registry], collect: (): void => this.istioOpenedSeries.flush() });
  readonly istioClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Istio standard metric: TCP connections closed (tunnels).', labelNames: ISTIO_LABELS, registers: [this.registry], collect: (): void => this.istioClosedSeries.flush() });
  readonly istioReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Istio standard metric: bytes received from the source.', labelNames: ISTIO_LABELS, registers: [this.registry], collect: (): void => this.istioReceivedSeries.flush() });
  readonly istioSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Istio standard metric: bytes sent back to the source.', labelNames: ISTIO_LABELS, registers: [this.registry], collect: (): void => this.istioSentSeries.flush() });

  // Series caches (see the file comment). Rule hits, evaluation errors and dry-run denials are keyed
  // by policy and rule names, which only the snapshot in force defines: cleared on each applied snapshot.
  private readonly decisionSeries = new SeriesCache(this.decisions);
  private readonly ruleHitSeries = new SeriesCache(this.ruleHits);
  private readonly evalErrorSeries = new SeriesCache(this.evalErrors);
  private readonly dryRunSeries = new SeriesCache(this.dryRunWouldDeny);
  private readonly closeSeries = new SeriesCache(this.tunnelsClosed);
  private readonly byteSeries = new SeriesCache(this.tunnelBytes);
  private readonly istioOpenedSeries = new SeriesCache(this.istioOpened);
  private readonly istioClosedSeries = new SeriesCache(this.istioClosed);
  private readonly istioReceivedSeries = new SeriesCache(this.istioReceived);
  private readonly istioSentSeries = new SeriesCache(this.istioSent);
  private readonly istioCaches: Record<IstioCounter, SeriesCache> = {
    opened: this.istioOpenedSeries, closed: this.istioClosedSeries, received: this.istioReceivedSeries, sent: this.istioSentSeries,
  };
  /**
   * Capped label values -> their Istio series: per source namespace (at most the cap plus `other`
   * and `unknown`), and in `waypoint` mode per destination namespace and workload too (each capped).
   */
  private readonly istioByNamespace = new Map<string, IstioSeries>();
  private readonly reporter: 'destination' | 'waypoint';
  private readonly destNamespaces: CappedLabel;
  private readonly destWorkloads: CappedLabel;

  constructor(opts: MetricsOptions = {}) {
    this.namespaces = new CappedLabel(opts.namespaceCap ?? NAMESPACE_LABEL_CAP);
    this.destNamespaces = new CappedLabel(opts.namespaceCap ?? NAMESPACE_LABEL_CAP);
    this.destWorkloads = new CappedLabel(opts.namespaceCap ?? NAMESPACE_LABEL_CAP);
    this.reporter = opts.reporter ?? 'destination';
    this.workload = opts.workload ?? {
      name: process.env['WAYGATE_WORKLOAD_NAME'] || 'waygate',
      namespace: process.env['POD_NAMESPACE'] || 'unknown',
    };
    this.ready.set(0);
  }

  /** Istio label set for a tunnel whose verified source namespace is `sourceNamespace` (and, as a waypoint, its destination). */
  istioLabels(sourceNamespace: string, destination?: IstioDestination): Record<(typeof ISTIO_LABELS)[number], string> {
    const ns = this.namespaces.value(sourceNamespace);
    if (this.reporter === 'destination') return this.istioLabelsOf(ns, this.workload.namespace, this.workload.name);
    return this.istioLabelsOf(ns, this.destNamespaces.value(destination?.namespace ?? ''), this.destWorkloads.value(destination?.workload ?? ''));
  }

  private istioLabelsOf(sourceNs: string, destNs: string, destWorkload: string): Record<(typeof ISTIO_LABELS)[number], string> {
    return {
      reporter: this.reporter,
      connection_security_policy: 'mutual_tls',
      source_workload_namespace: sourceNs,
      destination_workload: destWorkload,
      destination_workload_namespace: destNs,
    };
  }

  /**
   * Adds `n` to one Istio counter's series (label object built once per combination of capped
   * values). Runs for every tunnel's open, bytes and close: as the `destination` reporter the key
   * is the capped source namespace alone, no allocation once the series exists.
   */
  private istioAdd(sourceNamespace: string, destination: IstioDestination | undefined, counter: IstioCounter, n: number): void {
    const ns = this.namespaces.value(sourceNamespace);
    let dns = this.workload.namespace;
    let dwl = this.workload.name;
    let key = ns;
    if (this.reporter === 'waypoint') {
      dns = this.destNamespaces.value(destination?.namespace ?? '');
      dwl = this.destWorkloads.value(destination?.workload ?? '');
      key = ns + SEP + dns + SEP + dwl;
    }
    let entry = this.istioByNamespace.get(key);
    if (entry === undefined) {
      entry = { labels: this.istioLabelsOf(ns, dns, dwl), opened: null, closed: null, received: null, sent: null };
      this.istioByNamespace.set(key, entry);
    }
    const series = entry[counter] ?? (entry[counter] = this.istioCaches[counter].add(key, entry.labels));
    series.pending += n;
  }

  private ruleHit(policy: string, rule: string, action: string, mode: string): void {
    const key = policy + SEP + rule + SEP + action + SEP + mode;
    (this.ruleHitSeries.find(key) ?? this.ruleHitSeries.add(key, { policy, rule, action, mode })).pending++;
  }

  /**
   * Records one CONNECT decision (engine verdict or a transport refusal) and its rule hits.
   * Transport reasons (upstream_failed, destination_not_allowed) can follow an engine allow: the
   * record then still names the allowing rule and carries its evaluation time. Reasons decided
   * before policy ran (bad_request, no_identity) carry neither, and only the decision is counted.
   */
  recordDecision(d: DecisionFacts): void {
    const { decision: verdict, reason } = d;
    const key = verdict + SEP + reason;
    (this.decisionSeries.find(key) ?? this.decisionSeries.add(key, { decision: verdict, reason })).pending++;
    const engineReason = ENGINE_REASONS.has(reason);
    if (!engineReason && d.policy === null && d.evalMicros <= 0) return;
    // A transport refusal after policy ran follows an engine allow.
    const engineVerdict: Verdict = engineReason ? verdict : 'allow';
    this.decisionDuration.observe(d.evalMicros / 1e6);
    if (d.policy !== null && d.rule !== null) {
      // The deciding rule's action follows from the verdict (Istio's order: DENY rules deny, ALLOW rules allow).
      this.ruleHit(d.policy, d.rule, engineVerdict === 'deny' ? 'DENY' : 'ALLOW', 'Enforce');
    }
    for (const a of d.audit) this.ruleHit(a.policy, a.rule, a.action, a.mode);
    for (const e of d.evalErrors) {
      const errKey = e.policy + SEP + e.rule;
      (this.evalErrorSeries.find(errKey) ?? this.evalErrorSeries.add(errKey, { policy: e.policy, rule: e.rule })).pending++;
    }
    const dry = d.dryRun;
    if (dry) {
      for (const m of dry.matches) this.ruleHit(m.policy, m.rule, m.action, 'DryRun');
      if (dry.decision === 'deny' && engineVerdict === 'allow') {
        const policy = dry.policy ?? '(default)';
        (this.dryRunSeries.find(policy) ?? this.dryRunSeries.add(policy, { policy })).pending++;
      }
    }
  }

  tunnelOpened(sourceNamespace: string, destination?: IstioDestination): void {
    this.tunnelsActive.inc();
    this.istioAdd(sourceNamespace, destination, 'opened', 1);
  }

  /** Adds payload bytes as they flow, so long-lived tunnels show progress between scrapes. */
  tunnelBytesAdded(sourceNamespace: string, direction: ByteDirection, bytes: number, protocol: 'hbone' | 'tcp' = 'tcp', destination?: IstioDestination): void {
    if (bytes <= 0) return;
    const key = direction + SEP + protocol;
    (this.byteSeries.find(key) ?? this.byteSeries.add(key, { direction, protocol })).pending += bytes;
    this.istioAdd(sourceNamespace, destination, direction === 'received' ? 'received' : 'sent', bytes);
  }

  /** A tunnel closed; `opened` false for one that never answered 200 (only the close reason counts). */
  tunnelClosed(sourceNamespace: string, reason: CloseReason, opened = true, destination?: IstioDestination): void {
    (this.closeSeries.find(reason) ?? this.closeSeries.add(reason, { reason })).pending++;
    if (!opened) return;
    this.tunnelsActive.dec();
    this.istioAdd(sourceNamespace, destination, 'closed', 1);
  }

  /** Cached series per counter, for tests asserting the caches stay bounded. */
  cachedSeries(): { ruleHits: number; evalErrors: number; dryRunWouldDeny: number; istioNamespaces: number } {
    return {
      ruleHits: this.ruleHitSeries.size,
      evalErrors: this.evalErrorSeries.size,
      dryRunWouldDeny: this.dryRunSeries.size,
      istioNamespaces: this.istioByNamespace.size,
    };
  }

  /** Records a policy load and, when applied, the snapshot now in force. */
  recordReload(
    record: Pick<ReloadRecord, 'result' | 'trigger' | 'snapshot' | 'rules' | 'closedTunnels'> & Partial<Pick<ReloadRecord, 'errors'>>,
    opts: { count?: boolean; nowMs?: number } = {},
  ): void {
    // In workers mode the primary counts each reload once; workers only update the snapshot gauges.
    if (opts.count !== false) {
      this.reloads.inc({ result: record.result, trigger: record.trigger });
      countReloadErrors(this.reloadErrors, record);
    }
    if (record.result !== 'applied') return;
    // The new policy set may rename or drop policies and rules: forget their cached series so the
    // caches hold only names in force (the counted values stay in the counters).
    this.ruleHitSeries.clear();
    this.evalErrorSeries.clear();
    this.dryRunSeries.clear();
    this.snapshotInfo.reset();
    this.snapshotInfo.set({ version: String(record.snapshot.version), hash: record.snapshot.hash }, 1);
    this.snapshotRules.set(record.rules);
    this.snapshotTimestamp.set((opts.nowMs ?? Date.now()) / 1000);
    if (record.closedTunnels) this.reloadClosedTunnels.inc(record.closedTunnels);
  }

  /** Records a discovery load and, when applied, the snapshot now in force. */
  recordMeshReload(record: Pick<MeshReloadRecord, 'result' | 'trigger' | 'snapshot' | 'services' | 'workloads'>): void {
    this.meshReloads.inc({ result: record.result, trigger: record.trigger });
    if (record.result !== 'applied') return;
    this.meshSnapshotInfo.reset();
    this.meshSnapshotInfo.set({ version: String(record.snapshot.version), hash: record.snapshot.hash }, 1);
    this.meshServices.set(record.services);
    this.meshWorkloads.set(record.workloads);
  }

  /** Text exposition of this process's metrics. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** What {@link registerKubeDiscoveryMetrics} reads (src/discovery/kubernetes/provider.ts `health()`). */
export interface KubeDiscoveryHealthView {
  connected: boolean;
  staleSeconds: number;
  errors: readonly { resource: string; reason: string; count: number }[];
}

/**
 * The Kubernetes discovery provider's series (docs/waypoint.md, "Kubernetes discovery"), read from
 * its health when the registry collects: whether every list/watch is open, how stale the view in
 * force is, and the failures by resource and reason. Registered by the process that runs the
 * provider.
 */
export function registerKubeDiscoveryMetrics(registry: Registry, health: () => KubeDiscoveryHealthView): void {
  new Gauge({
    name: 'waygate_discovery_connected', help: '1 while every Kubernetes list/watch of discovery is open; 0 while any is failing (the last good snapshot stays in force).', registers: [registry],
    collect(): void { this.set(health().connected ? 1 : 0); },
  });
  new Gauge({
    name: 'waygate_discovery_stale_seconds', help: 'Seconds since discovery was last known current (0 while every watch is open). Alert when it grows: endpoints may have moved.', registers: [registry],
    collect(): void { this.set(health().staleSeconds); },
  });
  new Counter({
    name: 'waygate_discovery_watch_errors_total', help: 'Kubernetes list/watch failures of discovery, by resource and reason (unreachable, unauthorized, forbidden, server, idle, error).', labelNames: ['resource', 'reason'], registers: [registry],
    collect(): void {
      this.reset();
      for (const e of health().errors) this.inc({ resource: e.resource, reason: e.reason }, e.count);
    },
  });
}

/**
 * The primary's own series in workers mode: reloads are counted once per reload there (each worker
 * reloads too, but one file change is one reload), plus the worker count. Only metrics the workers
 * never increment live here, so the merge cannot double-count.
 */
export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly reloads = new Counter({ name: 'waygate_policy_reloads_total', help: 'Policy loads, by result and trigger.', labelNames: ['result', 'trigger'], registers: [this.registry] });
  readonly reloadErrors = reloadErrorsCounter(this.registry);
  readonly workers = new Gauge({ name: 'waygate_workers', help: 'Worker processes running.', registers: [this.registry] });
  readonly workerRestarts = new Counter({ name: 'waygate_worker_restarts_total', help: 'Worker processes that exited unexpectedly and were replaced.', registers: [this.registry] });
}

/**
 * `waygate_policy_reload_errors_total{code}`: why policy sets were rejected, one count per stable
 * error code per rejected load (`WG_POLICY_EMPTY` for a torn file, `WG_POLICY_UNSTABLE` for a
 * file still being written, `WG_POLICY_CEL`...). Codes are a closed set, so the label is bounded.
 */
function reloadErrorsCounter(registry: Registry): Counter<'code'> {
  return new Counter({ name: 'waygate_policy_reload_errors_total', help: 'Rejected policy loads, by the stable code of each kind of error they had (a load with two kinds counts once for each).', labelNames: ['code'], registers: [registry] });
}

/** Counts each distinct error code of a rejected reload once. */
export function countReloadErrors(counter: Counter<'code'>, record: Partial<Pick<ReloadRecord, 'errors'>> & Pick<ReloadRecord, 'result'>): void {
  if (record.result !== 'rejected' || !record.errors) return;
  for (const code of new Set(record.errors.map((e) => e.code))) counter.inc({ code });
}

/** `waygate_audit_state` values. */
const AUDIT_STATE_VALUE = { ok: 0, slow: 1, failed: 2 } as const;

/**
 * The audit writer's series (src/audit/logger.ts, docs/operating.md "Audit log guarantees"), read
 * from its health when the registry collects. Registered once, by the process that writes the
 * audit log (the single process, or the workers-mode primary), so a merge never counts twice.
 */
export function registerAuditMetrics(registry: Registry, health: () => AuditHealth): void {
  new Counter({
    name: 'waygate_audit_writes_total', help: 'Groups of audit records handed to one write call (group commit: the records of one event-loop turn).', registers: [registry],
    collect(): void { this.reset(); this.inc(health().writes); },
  });
  new Counter({
    name: 'waygate_audit_write_errors_total', help: 'Audit log write (or fsync) calls that failed: ENOSPC, EIO, EPIPE. Alert on any increase.', registers: [registry],
    collect(): void { this.reset(); this.inc(health().writeErrors); },
  });
  new Counter({
    name: 'waygate_audit_dropped_records_total', help: 'Audit records dropped: the bounded buffer was full, or records were still queued when the shutdown deadline passed.', registers: [registry],
    collect(): void { this.reset(); this.inc(health().droppedRecords); },
  });
  new Gauge({
    name: 'waygate_audit_state', help: 'Audit log writer: 0 ok, 1 slow (a write has not returned: backpressure), 2 failed (writes fail).', registers: [registry],
    collect(): void { this.set(AUDIT_STATE_VALUE[health().state]); },
  });
  new Gauge({
    name: 'waygate_audit_queued_bytes', help: 'Audit record bytes queued and not yet handed to the operating system.', registers: [registry],
    collect(): void { this.set(health().queuedBytes); },
  });
  new Gauge({
    name: 'waygate_audit_refusing', help: '1 while new CONNECTs are refused because the audit log cannot be written (audit.onFailure: deny).', registers: [registry],
    collect(): void { this.set(health().refusing ? 1 : 0); },
  });
}

/** What the registration controller (src/kube/gateway-status.ts) is in; one is 1, the others 0. */
export const REGISTRATION_STATES = [
  'starting', 'ok', 'gateway_missing', 'class_missing', 'class_not_ours', 'service_missing', 'forbidden', 'api_error',
] as const;
export type RegistrationState = (typeof REGISTRATION_STATES)[number];

/**
 * The registration controller's series, on a registry of their own: the controller runs in the
 * process that serves the admin listeners (single process or workers-mode primary), and the
 * composition root appends this text to the data plane's exposition.
 */
export class RegistrationMetrics {
  readonly registry = new Registry();
  readonly status = new Gauge({ name: 'waygate_registration_status', help: 'Registration (Gateway status) controller state: 1 for the current state (ok, gateway_missing, class_missing, class_not_ours, service_missing, forbidden, api_error, starting). Alert on ok != 1.', labelNames: ['state'], registers: [this.registry] });
  readonly statusWrites = new Counter({ name: 'waygate_registration_status_writes_total', help: 'Gateway and GatewayClass status writes, by result (ok, conflict = 409 then re-read, error).', labelNames: ['result'], registers: [this.registry] });

  setState(state: RegistrationState): void {
    for (const s of REGISTRATION_STATES) this.status.set({ state: s }, s === state ? 1 : 0);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Merges metric JSON from several processes (workers mode) into one text exposition. */
export async function aggregateMetricsText(parts: Awaited<ReturnType<Registry['getMetricsAsJSON']>>[]): Promise<string> {
  const { AggregatorRegistry } = await import('prom-client');
  return AggregatorRegistry.aggregate(parts).metrics();
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
