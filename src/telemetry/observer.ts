/**
 * The HBONE server's observer hooks (src/hbone/observer.ts) mapped onto {@link GatewayMetrics}.
 * Everything here runs on the data path: constant work per event, and no allocation once each
 * series has been seen (GatewayMetrics caches its label objects).
 */
import type { CloseRecord, DecisionRecord } from '../audit/record.ts';
import type { HandshakeFailureReason, HboneObserver } from '../hbone/observer.ts';
import type { DialFailureKind, UpstreamInfo, UpstreamProtocol } from '../upstream/connector.ts';
import type { GatewayMetrics, IstioDestination, RefusalLimit, TlsFailureReason } from './metrics.ts';

interface OpenTunnel {
  readonly namespace: string;
  readonly destination: IstioDestination | undefined;
}

/**
 * The endpoint a tunnel went to, from its decision record (discovery's facts, never a header's):
 * the workload picked for service traffic, or the workload addressed.
 */
function istioDestination(record: DecisionRecord): IstioDestination | undefined {
  const up = record.upstream;
  if (!up || up.workload === '') return undefined;
  const slash = up.workload.indexOf('/');
  return { namespace: up.workload.slice(0, slash), workload: up.workload.slice(slash + 1) };
}

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
  // decisionId -> source namespace (and, as a waypoint, the endpoint) of tunnels that answered
  // 200, so a close decrements the active gauge exactly once and never for a tunnel that never
  // opened (dial failure), and its bytes land on the series its open did.
  const open = new Map<string, OpenTunnel>();
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
        const t: OpenTunnel = { namespace: record.source.namespace, destination: istioDestination(record) };
        open.set(record.decisionId, t);
        metrics.tunnelOpened(t.namespace, t.destination);
      }
    },
    tunnelClosed(record: CloseRecord) {
      const t = open.get(record.decisionId);
      const ns = t?.namespace ?? record.source.namespace;
      const protocol = record.protocol ?? 'tcp';
      metrics.tunnelBytesAdded(ns, 'received', record.bytesReceived, protocol, t?.destination);
      metrics.tunnelBytesAdded(ns, 'sent', record.bytesSent, protocol, t?.destination);
      if (record.closeReason === 'idle_timeout') metrics.refusals.inc({ limit: 'idle_timeout' });
      metrics.tunnelClosed(ns, record.closeReason, open.delete(record.decisionId), t?.destination);
    },
    upstreamConnected(ms: number, info: UpstreamInfo) {
      metrics.upstreamConnectDuration.observe({ result: 'ok', protocol: info.protocol, reused: info.reused ? 'true' : 'false' }, ms / 1000);
    },
    upstreamFailed(kind: DialFailureKind, ms: number, protocol: UpstreamProtocol) {
      metrics.upstreamConnectDuration.observe({ result: kind, protocol, reused: 'false' }, ms / 1000);
    },
    pingTimeout() {
      metrics.pingTimeouts.inc();
    },
    refused(limit: RefusalLimit) {
      metrics.refusals.inc({ limit });
    },
  };
}
