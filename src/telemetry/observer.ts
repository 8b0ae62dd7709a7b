/**
 * The HBONE server's observer hooks (src/hbone/observer.ts) mapped onto {@link GatewayMetrics}.
 * Everything here runs on the data path: constant work per event, and no allocation once each
 * series has been seen (GatewayMetrics caches its label objects).
 */
import type { CloseRecord, DecisionRecord } from '../audit/record.ts';
import type { HandshakeFailureReason, HboneObserver } from '../hbone/observer.ts';
import type { DialFailureKind } from '../upstream/connector.ts';
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
      // The record carries everything the counters read (DecisionFacts): no Decision is rebuilt.
      metrics.recordDecision(record);
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
      metrics.tunnelClosed(ns, record.closeReason, open.delete(record.decisionId));
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
