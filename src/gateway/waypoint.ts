/**
 * The waypoint side of a runtime (docs/waypoint.md): the discovery source (the mesh file,
 * src/discovery/provider.ts, or the Kubernetes API, src/discovery/kubernetes/provider.ts, as the
 * config says) with its hot reload and `reload` records (`source: mesh`), the
 * endpoint balancer, and the HBONE connector that sends allowed tunnels on to the destination
 * pod's ztunnel with the gateway's own certificate (src/upstream/hbone.ts), its pool reported as
 * metrics. The runtime (runtime.ts) starts it before its listener and hands `routing` and
 * `connector` to the HBONE server.
 */
import { AUDIT_SCHEMA_VERSION, type MeshReloadRecord } from '../audit/record.ts';
import type { AuditSink } from '../audit/sink.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { EndpointBalancer } from '../discovery/balancer.ts';
import type { DiscoverySnapshot } from '../discovery/model.ts';
import { meshFileProvider, type DiscoveryProvider, type DiscoveryReload, type DiscoveryTrigger } from '../discovery/provider.ts';
import { WaygateError, formatDiagnostic } from '../errors.ts';
import type { DiscoveryRouting } from '../hbone/route.ts';
import type { TlsMaterial } from '../identity/tls-material.ts';
import { firstSpiffeId } from '../identity/peer-identity.ts';
import type { OpsLogger } from '../telemetry/log.ts';
import type { GatewayMetrics } from '../telemetry/metrics.ts';
import { createHboneConnector, type HboneConnector } from '../upstream/hbone.ts';

export interface Waypoint {
  readonly routing: DiscoveryRouting;
  readonly connector: HboneConnector;
  reload(trigger: DiscoveryTrigger): Promise<MeshReloadRecord>;
  /** The `discovery` section of `GET /debug/config`: the snapshot in force and the upstream pool. */
  info(): unknown;
  /** Called after every discovery swap with the snapshot now in force. */
  onSwap(listener: (snapshot: DiscoverySnapshot) => void): void;
  /** Stops the hot reload (drain: the snapshot in force stays). */
  stopWatching(): void;
  /** Closes the watch and every pooled upstream connection now. */
  close(): void;
}

/**
 * The `baggage` the gateway sends the destination's ztunnel, which logs and reports it as the
 * source's attributes (W3C Baggage; the keys ztunnel itself sends, docs/design.md §8.3): the
 * namespace from the gateway's own SPIFFE ID, its workload name from the Downward API.
 */
export function gatewayBaggage(material: TlsMaterial, env: NodeJS.ProcessEnv = process.env): string {
  const uris = (material.leaf.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  const id = firstSpiffeId(uris);
  const members: string[] = [];
  const cluster = env['CLUSTER_ID'];
  if (cluster) members.push(`k8s.cluster.name=${encodeURIComponent(cluster)}`);
  if (id?.namespace) members.push(`k8s.namespace.name=${encodeURIComponent(id.namespace)}`);
  members.push(`k8s.deployment.name=${encodeURIComponent(env['WAYGATE_WORKLOAD_NAME'] || 'waygate')}`);
  members.push('service.name=waygate');
  return members.join(',');
}

/** Which source a record names: `file` for a mesh file, `kubernetes` for the API. */
type RecordSource = { file: string } | { kubernetes: string };

function meshRecord(from: RecordSource, r: DiscoveryReload): MeshReloadRecord {
  const record: MeshReloadRecord = {
    schema: AUDIT_SCHEMA_VERSION,
    event: 'reload',
    source: 'mesh',
    time: new Date().toISOString(),
    result: r.result,
    snapshot: { version: r.snapshot.version, hash: r.snapshot.hash },
    ...from,
    services: r.services,
    workloads: r.workloads,
    errors: r.errors.map((d) => ({ file: d.file, line: d.line, col: d.col, path: d.path, code: d.code, message: d.message })),
    trigger: r.trigger,
  };
  if (r.previous) record.previous = { version: r.previous.version, hash: r.previous.hash };
  return record;
}

export async function startWaypoint(
  config: Readonly<GatewayConfig>,
  material: () => TlsMaterial,
  log: OpsLogger,
  metrics: GatewayMetrics,
  audit: AuditSink,
  onRecord?: (record: MeshReloadRecord) => void,
): Promise<Waypoint> {
  const { meshFile, kubernetes } = config.discovery;
  let provider: DiscoveryProvider;
  let from: RecordSource;
  /** Extra `/debug/config` fields of the source. */
  let sourceInfo: () => Record<string, unknown>;
  if (kubernetes !== null) {
    // Loaded only here: a gateway without Kubernetes never pays for client-node (src/kube/client.ts).
    const { loadKubeConfig } = await import('../kube/client.ts');
    const { kubernetesProvider } = await import('../discovery/kubernetes/provider.ts');
    const { registerKubeDiscoveryMetrics } = await import('../telemetry/metrics.ts');
    const kube = await loadKubeConfig({ kubeconfig: kubernetes.kubeconfig });
    const kp = kubernetesProvider({
      config: kube.config,
      server: kube.server,
      namespaces: kubernetes.namespaces,
      ...(kubernetes.labelSelector ? { labelSelector: kubernetes.labelSelector } : {}),
      trustDomain: config.trustDomains[0]!,
      clusterDomain: kubernetes.clusterDomain,
      log,
    });
    registerKubeDiscoveryMetrics(metrics.registry, () => kp.health());
    provider = kp;
    from = { kubernetes: kp.source };
    sourceInfo = () => ({ kubernetes: kp.source, credentials: kube.from, health: kp.health() });
    log.info({ source: kp.source, credentials: kube.from }, 'discovery: listing Services, EndpointSlices and Pods; not ready until the first full sync');
  } else {
    const file = meshFile!;
    provider = meshFileProvider(file, {
      trustDomain: config.trustDomains[0]!,
      debounceMs: config.policies.debounceMs,
      onMode: (mode, { dir, reason }) => {
        if (mode === 'poll') log.warn({ dir, reason }, 'cannot watch the mesh file\'s directory; polling it instead');
        else log.info({ dir }, 'the mesh file\'s directory is watched again; polling stopped');
      },
    });
    from = { file };
    sourceInfo = () => ({ file });
  }
  const write = onRecord ?? ((r: MeshReloadRecord) => audit.reload(r));
  const note = (r: DiscoveryReload): MeshReloadRecord => {
    const record = meshRecord(from, r);
    metrics.recordMeshReload(record);
    write(record);
    if (r.result === 'rejected') {
      log.error({ ...from, errors: r.errors.map(formatDiagnostic), keeps: r.snapshot }, 'discovery source rejected; the last good discovery snapshot stays in force');
    } else if (r.result === 'applied') {
      log.info({ ...from, version: r.snapshot.version, services: r.services, workloads: r.workloads, trigger: r.trigger }, 'discovery snapshot applied');
    }
    return record;
  };

  const first = await provider.reload('startup');
  note(first);
  if (first.result === 'rejected' || provider.current() === null) {
    provider.close();
    const what = 'file' in from ? `the mesh file ${from.file}` : `discovery from ${from.kubernetes}`;
    throw new WaygateError('file' in from ? 'WG_MESH' : 'WG_KUBE', `${what} did not load:\n` + first.errors.map(formatDiagnostic).join('\n'));
  }
  provider.watch(note, (err) => log.warn({ ...from, err: err.message }, 'discovery watch error'));

  const connector = createHboneConnector({
    tls: () => {
      const m = material();
      return { cert: m.cert, key: m.key, ca: m.ca };
    },
    baggage: gatewayBaggage(material()),
    maxStreamsPerConnection: config.upstream.maxStreamsPerConnection,
    poolIdleTimeoutMs: config.upstream.poolIdleTimeoutMs,
    handshakeTimeoutMs: config.timeouts.handshakeTimeoutMs,
    observer: {
      connectionsChanged: (d) => metrics.upstreamPoolConnections.inc(d),
      streamsChanged: (d) => metrics.upstreamPoolStreams.inc(d),
      connectionClosed: ({ reason }) => metrics.upstreamPoolClosed.inc({ reason }),
      handshakeFailed: (kind) => metrics.upstreamHandshakeFailures.inc({ kind }),
      connectFailed: (kind) => metrics.upstreamConnectFailures.inc({ kind }),
    },
    log,
  });

  const routing: DiscoveryRouting = {
    snapshot: () => provider.current(),
    allowDirect: config.discovery.allowDirect,
    allowPlaintext: config.upstream.allowPlaintext,
    balancer: new EndpointBalancer(),
  };
  let watching = true;
  return {
    routing,
    connector,
    reload: async (trigger) => note(await provider.reload(trigger)),
    onSwap: (listener) => provider.onSwap((next) => listener(next)),
    info() {
      const s = provider.current();
      return {
        configured: true,
        ...sourceInfo(),
        snapshot: s ? { version: s.version, hash: s.hash, source: s.source, services: s.services.length, workloads: s.workloads.length } : null,
        allowDirect: routing.allowDirect,
        allowPlaintext: routing.allowPlaintext,
        upstreamPool: connector.stats(),
      };
    },
    stopWatching() {
      if (!watching) return;
      watching = false;
      provider.close();
    },
    close() {
      if (watching) {
        watching = false;
        provider.close();
      }
      connector.close();
    },
  };
}
