/**
 * The HBONE server's observer hooks (src/hbone/observer.ts) mapped onto {@link GatewayMetrics}.
 * Everything here runs on the data path: constant work per event, no allocation beyond the label
 * objects prom-client needs.
 */
import type { CloseRecord, DecisionRecord } from '../audit/record.ts';
import type { HandshakeFailureReason, HboneObserver } from '../hbone/observer.ts';
import type { DialFailureKind } from '../hbone/upstream.ts';
import type { Decision } from '../policy/decision.ts';
import type { GatewayMetrics, RefusalLimit, TlsFailureReason } from './metrics.ts';

/** Handshake failure reasons of the data plane -> the metric's label values. */
const TLS_REASON: Record<HandshakeFailureReason, TlsFailureReason> = {
  timeout: 'timeout',
  no_certificate: 'no_client_certificate',
  untrusted: 'untrusted_certificate',
  expired: 'expired_certificate',
  certificate: 'invalid_certificate',
  protocol: 'protocol',
  other: 'other',
};

/** The metrics observer; also accepts `refused(limit)` from a data plane that reports limits. */
export interface MetricsObserver extends HboneObserver {
  refused(limit: RefusalLimit): void;
}

export function createMetricsObserver(metrics: GatewayMetrics): MetricsObserver {
  // decisionId -> source namespace of tunnels that answered 200, so a close decrements the
  // active gauge exactly once and never for a tunnel that never opened (dial failure).
  const open = new Map<string, string>();
  return {
    connectionOpened() {
      metrics.connectionsOpened.inc();
      metrics.connectionsActive.inc();
    },
    connectionClosed() {
      metrics.connectionsClosed.inc();
      metrics.connectionsActive.dec();
    },
    handshakeFailed(reason) {
      metrics.tlsHandshakeFailures.inc({ reason: TLS_REASON[reason] ?? 'other' });
      if (reason === 'timeout') metrics.refusals.inc({ limit: 'handshake_timeout' });
    },
    decision(record: DecisionRecord) {
      // Transport reasons (upstream_failed, destination_not_allowed) can follow an engine allow:
      // the record then still names the allowing rule and carries its evaluation time. Reasons
      // decided before policy ran (bad_request, no_identity) carry neither.
      const engineReason = ENGINE_REASONS.has(record.reason);
      const engineRan = engineReason || record.policy !== null || record.evalMicros > 0;
      const engine: Decision = {
        decision: engineReason ? record.decision : 'allow',
        reason: engineReason ? (record.reason as Decision['reason']) : record.policy !== null ? 'allowed' : 'default_allow',
        policy: record.policy,
        rule: record.rule,
        audit: record.audit,
        dryRun: record.dryRun,
        evalErrors: record.evalErrors.map((e) => ({ ...e, action: 'ALLOW', mode: 'Enforce' })),
        snapshot: record.snapshot,
        evalMicros: record.evalMicros,
      };
      metrics.recordDecision(record.decision, record.reason, engineRan ? engine : null);
      if (record.status === 200) {
        open.set(record.decisionId, record.source.namespace);
        metrics.tunnelOpened(record.source.namespace);
      }
    },
    tunnelClosed(record: CloseRecord) {
      const ns = open.get(record.decisionId) ?? record.source.namespace;
      metrics.tunnelBytesAdded(ns, 'received', record.bytesReceived);
      metrics.tunnelBytesAdded(ns, 'sent', record.bytesSent);
      if (record.closeReason === 'idle_timeout') metrics.refusals.inc({ limit: 'idle_timeout' });
      if (open.delete(record.decisionId)) metrics.tunnelClosed(ns, record.closeReason);
      else metrics.tunnelsClosed.inc({ reason: record.closeReason });
    },
    upstreamConnected(ms: number) {
      metrics.upstreamConnectDuration.observe({ result: 'ok' }, ms / 1000);
    },
    upstreamFailed(kind: DialFailureKind, ms: number) {
      metrics.upstreamConnectDuration.observe({ result: kind }, ms / 1000);
    },
    pingTimeout() {
      metrics.pingTimeouts.inc();
    },
    refused(limit: RefusalLimit) {
      metrics.refusals.inc({ limit });
    },
  };
}

const ENGINE_REASONS = new Set(['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error']);
