/**
 * The per-process data plane as the config describes it: TLS material (watched files, or the mesh
 * CA's certificate, renewed), the policy store and its reloader, the decision path, the HBONE
 * server and its metrics. In single-process mode
 * the gateway runs one; in workers mode every worker runs one (each holds its own snapshot) and
 * the primary owns the side ports.
 *
 * Start order matters: TLS material is validated first (nothing can be served without it), then
 * the first policy load completes, then the listener opens - so the first CONNECT already meets
 * a snapshot. Readiness turns true only after all three.
 */
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import type { MeshReloadRecord, ReloadRecord } from '../audit/record.ts';
import type { HeaderAuditPolicy } from '../audit/redact.ts';
import type { AuditSink } from '../audit/sink.ts';
import { parseHostPort } from '../config/address.ts';
import { WaygateError } from '../errors.ts';
import { discoveryConfigured, type GatewayConfig } from '../config/schema.ts';
import { DestinationPolicy } from '../hbone/destination.ts';
import { ConnectRecorder } from '../hbone/records.ts';
import { Router, withMeshFacts } from '../hbone/route.ts';
import { createSandwichListener, sandwichRejectedCounter, type SandwichListener } from '../sandwich/listener.ts';
import { createHboneServer, type HboneServer, type HboneTlsOptions } from '../hbone/server.ts';
import type { TunnelInfo } from '../hbone/tunnel.ts';
import { IstioCaSource } from '../identity/istio-ca/source.ts';
import type { TlsMaterial } from '../identity/tls-material.ts';
import type { DecisionContext } from '../policy/context.ts';
import { DecisionCache } from '../policy/decision-cache.ts';
import type { Decision } from '../policy/decision.ts';
import { summarizeSnapshot, type PolicySnapshot } from '../policy/snapshot.ts';
import { PolicyStore } from '../policy/store.ts';
import type { OpsLogger } from '../telemetry/log.ts';
import type { GatewayMetrics } from '../telemetry/metrics.ts';
import { createMetricsObserver } from '../telemetry/observer.ts';
import { Readiness } from '../admin/readiness.ts';
import { PolicyReloader, type ReloadTrigger } from './reload.ts';
import { timerAt, type LongTimer } from '../util/long-timer.ts';
import { openTlsSource } from './tls-source.ts';
import { startWaypoint, type Waypoint } from './waypoint.ts';

/** Attribute-path prefix of a constant-key header read (`request.headers["x-tenant"]`). */
const HEADER_READ_PREFIX = 'request.headers.';

export interface RuntimeOptions {
  config: Readonly<GatewayConfig>;
  audit: AuditSink;
  log: OpsLogger;
  metrics: GatewayMetrics;
  /** Ports of the side listeners (ready, metrics, admin): a tunnel to one is a self-call (503). */
  ownPorts: readonly number[];
  /**
   * Where reload records go. Default: the audit sink and the metrics. A worker passes its IPC
   * channel so the primary writes one record per reload for all workers.
   */
  onReloadRecord?: (record: ReloadRecord) => void;
  /** Version of the startup load (workers mode: the primary numbers every worker's loads alike). */
  initialVersion?: number;
  /** Where mesh reload records go; default the audit sink. */
  onMeshReload?: (record: MeshReloadRecord) => void;
}

/** `/debug/policy` of one runtime: whether a snapshot is loaded, and if so its summary and policies (each one, not a count). */
export type PolicyInfo =
  | { loaded: false }
  | ({ loaded: true } & Omit<ReturnType<typeof summarizeSnapshot>, 'policies'> & {
    defaultAction: GatewayConfig['defaultAction'];
    decisionCache: ReturnType<DecisionCache['stats']>;
    policies: { name: string; action: string; mode: string; file: string; rules: string[] }[];
  });

/**
 * Events of a runtime: `tls-update` (TlsMaterial) after certificate rotation, `tls-error` (Error)
 * when changed files failed to load, `reload` (ReloadRecord) after every policy load.
 */
export type RuntimeEvents = EventEmitter;

export interface GatewayRuntime {
  readonly events: RuntimeEvents;
  readonly readiness: Readiness;
  readonly store: PolicyStore<PolicySnapshot>;
  readonly server: HboneServer;
  /** The HBONE listener as `host:port`. */
  readonly hboneAddress: string;
  /** The sandwich listener (docs/waypoint.md) as `host:port`; null when off. */
  readonly sandwichAddress: string | null;
  /** The record of the load done at startup. */
  readonly startupRecord: ReloadRecord;
  /** The decision function the server uses (also what a re-check uses). */
  authorize(ctx: DecisionContext): Decision;
  reload(trigger: ReloadTrigger, version?: number): Promise<ReloadRecord>;
  /** `/debug/policy`: the snapshot in force. */
  policyInfo(): PolicyInfo;
  /** `/debug/connections`: live tunnels. */
  connections(): TunnelInfo[];
  /** `/debug/config`-style view of the TLS material in use (fingerprint and dates, never key bytes). */
  tlsInfo(): unknown;
  /** The `discovery` section of `GET /debug/config`: the snapshot in force and the upstream pool. */
  discoveryInfo(): unknown;
  /** Reloads the mesh file now (SIGHUP, POST /debug/reload); null without one. */
  reloadMesh(trigger: 'signal' | 'admin'): Promise<MeshReloadRecord | null>;
  /** Not ready -> GOAWAY -> wait up to the deadline -> reset the rest (`draining` records). */
  drain(deadlineMs: number): Promise<{ remaining: number }>;
  close(): Promise<void>;
}

/** The decision a CONNECT gets while no snapshot has ever loaded: fail closed. */
function noSnapshotDecision(): Decision {
  return {
    decision: 'deny', reason: 'default_deny', policy: null, rule: null, audit: [], dryRun: null, evalErrors: [],
    snapshot: { version: 0, hash: '' }, evalMicros: 0,
  };
}

function tlsOptions(m: TlsMaterial, allowTls12: boolean): HboneTlsOptions {
  return { cert: m.cert, key: m.key, ca: m.ca, minVersion: allowTls12 ? 'TLSv1.2' : 'TLSv1.3', allowTls12 };
}

/**
 * Throws WG_POLICY_IO naming every policy path that does not exist, with the setting and flag
 * that chose it.
 */
function requirePolicyPaths(paths: readonly string[]): void {
  const missing: string[] = [];
  for (const p of paths) {
    try {
      statSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') missing.push(p);
      // Anything else (EACCES, ...) is the loader's to report, position and all.
    }
  }
  if (missing.length === 0) return;
  throw new WaygateError(
    'WG_POLICY_IO',
    `policy path ${missing.join(', ')} does not exist (policies.paths, --policies): create it, or point --policies at the policy files`,
  );
}

export async function startRuntime(opts: RuntimeOptions): Promise<GatewayRuntime> {
  const { config, log, metrics, audit } = opts;
  const events = new EventEmitter();
  const readiness = new Readiness();
  readiness.onChange((s) => metrics.ready.set(s.ready ? 1 : 0));
  const store = new PolicyStore<PolicySnapshot>();
  const cache = new DecisionCache({ max: 10_000 });
  const decideOptions = { defaultAction: config.defaultAction, clock: process.hrtime.bigint };

  const authorize = (ctx: DecisionContext): Decision => {
    const snapshot = store.current();
    return snapshot ? cache.decide(snapshot, ctx, decideOptions) : noSnapshotDecision();
  };

  // 0. The policy paths exist. One that is missing at start-up is a mistake (a typo in
  // --policies, `npm start` run outside the repository), not a gateway to run while it denies
  // every CONNECT: the start fails naming it (docs/operating.md "Exit codes"). A path that
  // disappears later is a rejected reload, and the snapshot in force stays.
  requirePolicyPaths(config.policies.paths);

  // 1. TLS material, from files or from the mesh CA (tls-source.ts): throws WG_CERT naming the
  // file, or WG_CA naming the CA and why, when no valid certificate can be had.
  const tls = await openTlsSource(config, log);
  const noteMaterial = (m: TlsMaterial): void => {
    metrics.certificateExpiry.set(m.notAfter.getTime() / 1000);
  };
  noteMaterial(tls.current);

  let server: HboneServer | undefined;
  let sandwich: SandwichListener | null = null;
  const onReloadRecord = opts.onReloadRecord ?? ((r: ReloadRecord) => {
    metrics.recordReload(r);
    audit.reload(r);
  });
  const deliver = (r: ReloadRecord): void => {
    onReloadRecord(r);
    events.emit('reload', r);
  };
  // The start-up load's record is held until the listener is up: a start that fails after the
  // load (the HBONE port in use) leaves no `reload` record of a snapshot that never served.
  let heldRecords: ReloadRecord[] | null = [];
  const reloader = new PolicyReloader({
    paths: config.policies.paths,
    store,
    recheck: () => (server ? server.recheck(authorize) : 0) + (sandwich?.recheck(authorize) ?? 0),
    onRecord: (r) => {
      if (r.result === 'applied') readiness.setSnapshotLoaded(true);
      // Workers record the snapshot gauges locally even when the primary writes the record.
      if (opts.onReloadRecord) metrics.recordReload(r, { count: false });
      if (heldRecords) heldRecords.push(r);
      else deliver(r);
    },
    log,
  });

  // 2. The first policy load, before the listener opens.
  const startupRecord = await reloader.reload('startup', opts.initialVersion);

  // Decision records must hold the full evaluation input so `audit replay` re-decides exactly
  // (docs/design.md §4): besides the operator's allow-list they carry every header the snapshot in force
  // reads by name (`request.headers["x-tenant"]`). Redaction still applies to those. Computed once
  // per snapshot, not per CONNECT.
  const auditHeaderPolicies = new WeakMap<object, HeaderAuditPolicy>();
  const auditHeadersFor = (snapshot: PolicySnapshot | null | undefined): HeaderAuditPolicy => {
    if (!snapshot) return config.audit.headers;
    let policy = auditHeaderPolicies.get(snapshot);
    if (!policy) {
      const read = [...snapshot.reads]
        .filter((r) => r.startsWith(HEADER_READ_PREFIX) && r.length > HEADER_READ_PREFIX.length)
        .map((r) => r.slice(HEADER_READ_PREFIX.length));
      policy = {
        allow: [...new Set([...config.audit.headers.allow, ...read])],
        redact: config.audit.headers.redact,
      };
      auditHeaderPolicies.set(snapshot, policy);
    }
    return policy;
  };

  // 3. Discovery (docs/waypoint.md): its first load completes before the listener opens, as the
  // policy's does, so no CONNECT is resolved against half a mesh; a mesh file that does not load
  // stops the start, and the Kubernetes source resolves only after its first full sync (readiness
  // stays false until then). HBONE to mesh endpoints presents the gateway's own certificate, the one the
  // listener serves (rotated with it).
  let waypoint: Waypoint | null = null;
  // Held like the policy's start-up record: a snapshot that never served is not recorded.
  const writeMeshRecord = opts.onMeshReload ?? ((r: MeshReloadRecord) => audit.reload(r));
  let heldMeshRecords: MeshReloadRecord[] | null = [];
  if (discoveryConfigured(config)) {
    try {
      waypoint = await startWaypoint(config, () => tls.current, log, metrics, audit, (r) => {
        if (heldMeshRecords) heldMeshRecords.push(r);
        else writeMeshRecord(r);
      });
    } catch (err) {
      // A discovery load that stops the start is recorded: it is why the gateway did not start.
      for (const r of heldMeshRecords ?? []) writeMeshRecord(r);
      tls.close();
      throw err;
    }
  }

  // 4. The listener.
  const listen = parseHostPort(config.listen);
  if (!listen.ok) throw new Error(listen.message); // validated by the config loader already
  const observer = createMetricsObserver(metrics);
  const snapshotInfo = (): { version: number; hash: string } => {
    const s = store.current();
    return s ? { version: s.version, hash: s.hash } : { version: 0, hash: '' };
  };
  const servedMaterial = tls.current;
  server = createHboneServer({
    listen: listen.value,
    tls: tlsOptions(servedMaterial, config.tls.allowTls12),
    acceptedTrustDomains: config.trustDomains,
    authorize,
    audit,
    observer,
    destinations: { allow: config.destinations.allow, routes: config.destinations.routes },
    denyStatus: config.denyStatus,
    connectTimeoutMs: config.timeouts.connectTimeoutMs,
    handshakeTimeoutMs: config.timeouts.handshakeTimeoutMs,
    idleTimeoutMs: config.timeouts.idleTimeoutMs,
    h2: { maxConcurrentStreams: config.limits.maxStreamsPerConnection, maxHeaderListBytes: config.limits.maxHeaderListBytes },
    ownPorts: opts.ownPorts,
    headerAuditPolicy: () => auditHeadersFor(store.current()),
    maxConnections: config.limits.maxConnections,
    maxPendingDialsPerConnection: config.limits.maxPendingDialsPerConnection,
    proxyProtocol: config.proxyProtocol,
    ...(waypoint ? { discovery: waypoint.routing, hboneUpstream: waypoint.connector } : {}),
    log,
    snapshotInfo,
  });
  let address;
  let sandwichAddress: string | null = null;
  try {
    address = await server.listen();
    // 5. Sandwich mode (docs/waypoint.md): streams from the pod's own ztunnel, decided alike.
    if (config.sandwich.listen !== null) {
      const at = parseHostPort(config.sandwich.listen);
      if (!at.ok) throw new WaygateError('WG_CONFIG', at.message);
      if (!waypoint) throw new WaygateError('WG_CONFIG', 'sandwich.listen needs a discovery source (discovery.meshFile, --mesh, or discovery.kubernetes): sandwich mode sends only to endpoints discovery picks');
      sandwich = createSandwichListener({
        host: at.value.host,
        port: at.value.port,
        headerTimeoutMs: config.sandwich.headerTimeoutMs,
        connectTimeoutMs: config.timeouts.connectTimeoutMs,
        idleTimeoutMs: config.timeouts.idleTimeoutMs,
        acceptedTrustDomains: config.trustDomains,
        authorize,
        router: new Router(new DestinationPolicy({ allow: config.destinations.allow, routes: config.destinations.routes }, [...opts.ownPorts, address.port]), waypoint.routing),
        recorder: new ConnectRecorder({ audit, observer, log, headerAuditPolicy: () => auditHeadersFor(store.current()), snapshotInfo }),
        log,
        onRejected: sandwichRejectedCounter(metrics.registry),
      });
      const sw = await sandwich.listen();
      sandwichAddress = sw.family === 'IPv6' ? `[${sw.address}]:${sw.port}` : `${sw.address}:${sw.port}`;
      log.info({ address: sandwichAddress }, 'sandwich listener open: PROXY v2 streams from the pod\'s ztunnel');
    }
  } catch (err) {
    await server.close();
    tls.close();
    waypoint?.close();
    throw err;
  }
  const held = heldRecords;
  heldRecords = null;
  for (const r of held) deliver(r);
  const heldMesh = heldMeshRecords;
  heldMeshRecords = null;
  for (const r of heldMesh) writeMeshRecord(r);
  const hboneAddress = address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;

  // Certificate rotation: new handshakes get the new material, live connections keep theirs.
  const srv = server;
  // A discovery swap re-decides live tunnels whose destination's mesh facts changed (route.ts
  // withMeshFacts); a tunnel now denied is closed on both hops, as after a policy swap.
  waypoint?.onSwap((snapshot) => {
    const redecide = (ctx: DecisionContext): Decision => authorize(withMeshFacts(ctx, snapshot));
    const closed = srv.recheck(redecide) + (sandwich?.recheck(redecide) ?? 0);
    if (closed > 0) log.info({ closed, discoveryVersion: snapshot.version }, 'tunnels closed: the new discovery snapshot changed their destination and the policy no longer allows them');
  });
  // Readiness follows the certificate's notAfter: once it passes without new material (a renewal or
  // a reload), every peer refuses the handshake, so the pod takes no new connections
  // (`tls_certificate_expired`) until new material arrives. A year-long certificate is beyond one
  // Node timer: timerAt.
  let expiryTimer: LongTimer | undefined;
  const watchExpiry = (m: TlsMaterial): void => {
    expiryTimer?.clear();
    expiryTimer = timerAt(m.notAfter.getTime(), () => {
      if (tls.current === m) readiness.setTlsExpired(true);
    });
  };
  const stopExpiryWatch = (): void => {
    expiryTimer?.clear();
    expiryTimer = undefined;
  };
  const applyMaterial = (m: TlsMaterial): void => {
    srv.setSecureContext(tlsOptions(m, config.tls.allowTls12));
    readiness.setTlsExpired(false);
    noteMaterial(m);
    watchExpiry(m);
  };
  // New material that arrived while the start waited (discovery's first sync, the listens): the
  // listener was built from what was current before.
  if (tls.current !== servedMaterial) applyMaterial(tls.current);
  else watchExpiry(servedMaterial);
  tls.on('update', (m: TlsMaterial) => {
    applyMaterial(m);
    metrics.tlsMaterialReloads.inc();
    // The mesh CA source logs its own renewals, with the next renewal time.
    if (!config.tls.istioCa) log.info({ fingerprint: m.fingerprint, notAfter: m.notAfter.toISOString() }, 'TLS material reloaded');
    events.emit('tls-update', m);
  });
  tls.on('error', (err: Error) => {
    metrics.tlsMaterialErrors.inc();
    // The mesh CA source logs its own failures, with the retry time and whether the certificate expired.
    if (!config.tls.istioCa) log.error({ err: err.message }, 'TLS material reload failed; the previous certificate stays in use');
    events.emit('tls-error', err);
  });
  readiness.setTlsLoaded(true);

  let closed = false;
  return {
    events,
    readiness,
    store,
    server,
    hboneAddress,
    sandwichAddress,
    startupRecord,
    authorize,
    reload: (trigger, version) => reloader.reload(trigger, version),
    policyInfo() {
      const s = store.current();
      if (!s) return { loaded: false };
      return {
        loaded: true,
        ...summarizeSnapshot(s),
        defaultAction: config.defaultAction,
        decisionCache: cache.stats(),
        policies: s.policies.map((p) => ({
          name: p.name, action: p.action, mode: p.mode,
          file: `${p.location.file}:${p.location.line}:${p.location.col}`,
          rules: p.rules.map((r) => r.name),
        })),
      };
    },
    connections: () => srv.tunnels.list(),
    tlsInfo() {
      const m = tls.current;
      const ca = tls instanceof IstioCaSource ? tls.status() : null;
      return {
        source: ca ? 'istio-ca' : 'files',
        fingerprint: m.fingerprint, notAfter: m.notAfter.toISOString(), loadedAt: m.loadedAt.toISOString(),
        subjectAltName: m.leaf.subjectAltName ?? '', lastError: tls.lastError?.message ?? null,
        ...(ca ? {
          istioCa: {
            address: ca.address, identity: ca.identity, issuedCount: ca.issuedCount, consecutiveFailures: ca.consecutiveFailures,
            nextAttemptAt: ca.nextAttemptAt?.toISOString() ?? null, lastErrorAt: ca.lastErrorAt?.toISOString() ?? null,
          },
        } : {}),
      };
    },
    async drain(deadlineMs) {
      readiness.setDraining();
      tls.close();
      stopExpiryWatch();
      waypoint?.stopWatching();
      const startedAt = performance.now();
      const [result] = await Promise.all([srv.drain(deadlineMs), sandwich?.drain(deadlineMs)]);
      // The client side is done (or reset): pooled upstream connections close after their streams.
      await waypoint?.connector.drain(Math.max(0, deadlineMs - (performance.now() - startedAt)));
      return result;
    },
    async close() {
      if (closed) return;
      closed = true;
      tls.close();
      stopExpiryWatch();
      await Promise.all([srv.close(), sandwich?.close()]);
      waypoint?.close();
    },
    discoveryInfo: () => waypoint?.info() ?? { configured: false },
    reloadMesh: (trigger) => (waypoint ? waypoint.reload(trigger) : Promise.resolve(null)),
  };
}
