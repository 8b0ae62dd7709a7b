/**
 * The options of the HBONE server and their validation: `resolveServerOptions()` checks every
 * option once, fills in the defaults and returns what the server's parts (session.ts,
 * connect-handler.ts, decision-record.ts) take. A bad option throws `WG_CONFIG` naming it.
 */
import type { SecureServerOptions } from 'node:http2';
import type { Logger } from 'pino';
import { DEFAULT_HEADER_AUDIT_POLICY, type HeaderAuditPolicy } from '../audit/redact.ts';
import type { AuditSink } from '../audit/sink.ts';
import { optionInRange } from '../config/ranges.ts';
import { WaygateError } from '../errors.ts';
import { DestinationPolicy, type DestinationOptions } from './destination.ts';
import { resolveH2Options, type H2Options, type ResolvedH2Options } from './h2-settings.ts';
import type { HboneObserver } from './observer.ts';
import { Router, type DiscoveryRouting } from './route.ts';
import { proxyV2Connector } from '../upstream/proxy-v2.ts';
import type { Authorize } from './tunnel-registry.ts';
import { tcpConnector } from '../upstream/tcp.ts';
import type { UpstreamConnector } from '../upstream/connector.ts';

/** TLS material and versions of the listener. */
export interface HboneTlsOptions {
  /** PEM certificate chain (leaf first) the gateway presents. */
  cert: string | Buffer;
  key: string | Buffer;
  /** Trust bundle (PEM) client certificates must chain to. */
  ca: string | Buffer | (string | Buffer)[];
  /** Default TLSv1.3; TLSv1.2 only together with `allowTls12`. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  allowTls12?: boolean;
}

export interface HboneServerOptions {
  listen: { host: string; port: number };
  tls: HboneTlsOptions;
  /** SPIFFE trust domains whose identities are accepted (e.g. `["cluster.local"]`). */
  acceptedTrustDomains: readonly string[];
  /**
   * The policy decision for one context; synchronous and pure (the engine's decide()). It is
   * called for every new CONNECT, so it must read the snapshot in force at each call
   * (`ctx => decide(store.current, ctx, opts)`); after a swap, call `HboneServer.recheck`.
   */
  authorize: Authorize;
  audit: AuditSink;
  observer?: HboneObserver;
  destinations: DestinationOptions;
  /** Status of a policy deny; default 401 (ztunnel's), e.g. 403. */
  denyStatus?: number;
  /** Upstream connect timeout; default 10 s. (src/config/ranges.ts holds the range and default of each numeric option here.) */
  connectTimeoutMs?: number;
  /** TLS handshake and HTTP/2 preface timeout each; default 10 s. */
  handshakeTimeoutMs?: number;
  /** Close a tunnel with no byte in either direction for this long; 0 (default) = never. */
  idleTimeoutMs?: number;
  h2?: H2Options;
  /** Ports the gateway itself listens on (admin, metrics...); the HBONE port is added at listen(). */
  ownPorts?: readonly number[];
  /**
   * Which request headers decision records carry. A function is called per record, so the gateway
   * can widen the allow-list to the headers the snapshot in force reads (replay needs them).
   */
  headerAuditPolicy?: HeaderAuditPolicy | (() => HeaderAuditPolicy);
  /** Refuse TCP connections beyond this many open ones (0 = no limit); each refusal is observed. Default 10,000, the config's. */
  maxConnections?: number;
  /** Write a PROXY v2 header (client address + SPIFFE ID TLV 0xD0) to every upstream (src/upstream/proxy-v2.ts). */
  proxyProtocol?: boolean;
  /**
   * How allowed tunnels reach their destination (src/upstream/connector.ts); default plain TCP, or TCP with a
   * PROXY v2 header when `proxyProtocol` is set (the two options exclude each other).
   */
  upstream?: UpstreamConnector;
  /**
   * A discovery source (src/discovery/): CONNECTs resolve to services and workloads, and allowed
   * tunnels go to an endpoint the balancer picks (route.ts). Without it, the `:authority` is dialed.
   */
  discovery?: DiscoveryRouting;
  /**
   * The connector for endpoints that speak HBONE (src/upstream/hbone.ts); required with
   * `discovery`. Plain-TCP endpoints and direct dials use `upstream`.
   */
  hboneUpstream?: UpstreamConnector;
  /**
   * Upstream dials in flight per HTTP/2 connection. A CONNECT beyond it waits for a slot, in
   * arrival order, within its connect timeout counted from its arrival (dial-queue.ts); one whose
   * budget runs out first is answered 503 (`upstream_failed`, no dial, counted as a
   * `max_pending_dials` refusal). Bounds the sockets one peer can make the gateway open at once.
   * Default 100 (ztunnel's per-connection stream count); a value above `h2.maxConcurrentStreams`
   * is clamped to it (a connection never has more CONNECTs than streams).
   */
  maxPendingDialsPerConnection?: number;
  log?: Logger;
  /** The snapshot in force, for records of CONNECTs refused before policy ran (bad_request, no_identity). */
  snapshotInfo?: () => { version: number; hash: string };
}

/** The options once validated, with every default filled in. */
export interface ResolvedServerOptions {
  host: string;
  port: number;
  tls: Pick<SecureServerOptions, 'cert' | 'key' | 'ca' | 'minVersion'>;
  acceptedTrustDomains: readonly string[];
  authorize: Authorize;
  audit: AuditSink;
  observer: HboneObserver | undefined;
  destinations: DestinationPolicy;
  /** Where each CONNECT leads: the destination policy plus discovery, if any. */
  router: Router;
  hboneUpstream: UpstreamConnector | null;
  denyStatus: number;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  h2: ResolvedH2Options;
  headerAuditPolicy: () => HeaderAuditPolicy;
  maxConnections: number;
  upstream: UpstreamConnector;
  maxPendingDials: number;
  log: Logger | undefined;
  snapshotInfo: () => { version: number; hash: string };
}

const EMPTY_SNAPSHOT = Object.freeze({ version: 0, hash: '' });

function positiveInt(path: string, v: unknown, dflt: number, min = 1): number {
  const value = v ?? dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new WaygateError('WG_CONFIG', `${path}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return value;
}

/** Validates the TLS options; what `createSecureServer` and `setSecureContext` take. */
export function tlsOptions(t: HboneTlsOptions): Pick<SecureServerOptions, 'cert' | 'key' | 'ca' | 'minVersion'> {
  if (!t || typeof t !== 'object') throw new WaygateError('WG_CONFIG', 'tls: expected {cert, key, ca}');
  for (const f of ['cert', 'key', 'ca'] as const) {
    const v = t[f];
    if (v === undefined || v === null || (typeof v === 'string' && v.length === 0)) {
      throw new WaygateError('WG_CONFIG', `tls.${f}: required (PEM)`);
    }
  }
  const minVersion = t.minVersion ?? 'TLSv1.3';
  if (minVersion !== 'TLSv1.3' && minVersion !== 'TLSv1.2') {
    throw new WaygateError('WG_CONFIG', `tls.minVersion: expected "TLSv1.3" (or "TLSv1.2" with allowTls12), got ${JSON.stringify(minVersion)}`);
  }
  if (minVersion === 'TLSv1.2' && !t.allowTls12) {
    throw new WaygateError('WG_CONFIG', 'tls.minVersion: TLSv1.2 needs tls.allowTls12: true (ztunnel speaks TLS 1.3 only)');
  }
  return { cert: t.cert, key: t.key, ca: t.ca, minVersion };
}

function upstreamConnector(opts: HboneServerOptions): UpstreamConnector {
  const proxyProtocol = opts.proxyProtocol === true;
  if (opts.upstream === undefined) return proxyProtocol ? proxyV2Connector : tcpConnector;
  if (!opts.upstream || typeof opts.upstream.prepare !== 'function') {
    throw new WaygateError('WG_CONFIG', 'upstream: expected an upstream connector ({ prepare(request) })');
  }
  if (proxyProtocol) throw new WaygateError('WG_CONFIG', 'proxyProtocol: not with a custom upstream connector (the connector decides what it sends first)');
  return opts.upstream;
}

/** Validates every option and fills in the defaults. Throws `WG_CONFIG` naming the first bad option. */
export function resolveServerOptions(opts: HboneServerOptions): ResolvedServerOptions {
  if (!opts || typeof opts !== 'object') throw new WaygateError('WG_CONFIG', 'options: expected an object');
  if (!opts.listen || typeof opts.listen.host !== 'string' || opts.listen.host.length === 0) {
    throw new WaygateError('WG_CONFIG', 'listen.host: expected an address such as "0.0.0.0" or "127.0.0.1"');
  }
  const port = positiveInt('listen.port', opts.listen.port, 15008, 0);
  if (port > 65535) throw new WaygateError('WG_CONFIG', `listen.port: ${port} is not a port`);
  const tls = tlsOptions(opts.tls);
  if (!Array.isArray(opts.acceptedTrustDomains) || opts.acceptedTrustDomains.length === 0) {
    throw new WaygateError('WG_CONFIG', 'acceptedTrustDomains: expected a non-empty list such as ["cluster.local"]');
  }
  if (typeof opts.authorize !== 'function') throw new WaygateError('WG_CONFIG', 'authorize: expected a function (ctx) => Decision');
  if (!opts.audit || typeof opts.audit.decision !== 'function' || typeof opts.audit.close !== 'function') {
    throw new WaygateError('WG_CONFIG', 'audit: expected an AuditSink');
  }
  const denyStatus = positiveInt('denyStatus', opts.denyStatus, 401);
  if (denyStatus < 400 || denyStatus > 499) throw new WaygateError('WG_CONFIG', `denyStatus: expected a 4xx status (401 or 403), got ${denyStatus}`);
  const connectTimeoutMs = optionInRange('timeouts.connectTimeoutMs', 'connectTimeoutMs', opts.connectTimeoutMs);
  const handshakeTimeoutMs = optionInRange('timeouts.handshakeTimeoutMs', 'handshakeTimeoutMs', opts.handshakeTimeoutMs);
  const idleTimeoutMs = optionInRange('timeouts.idleTimeoutMs', 'idleTimeoutMs', opts.idleTimeoutMs);
  const h2 = resolveH2Options(opts.h2);
  const destinations = new DestinationPolicy(opts.destinations, opts.ownPorts ?? []);
  const headerAuditPolicyOpt = opts.headerAuditPolicy ?? DEFAULT_HEADER_AUDIT_POLICY;
  const maxConnections = optionInRange('limits.maxConnections', 'maxConnections', opts.maxConnections);
  const upstream = upstreamConnector(opts);
  if (opts.discovery !== undefined && (!opts.hboneUpstream || typeof opts.hboneUpstream.prepare !== 'function')) {
    throw new WaygateError('WG_CONFIG', 'hboneUpstream: required with discovery (endpoints in the mesh are reached over HBONE)');
  }
  const router = new Router(destinations, opts.discovery ?? null);
  // Clamped to the stream limit: dials beyond it could never be in flight anyway. The default
  // (100) is ztunnel's per-connection stream ceiling; a burst beyond it waits for a slot (dial-queue.ts).
  const maxPendingDials = Math.min(
    optionInRange('limits.maxPendingDialsPerConnection', 'maxPendingDialsPerConnection', opts.maxPendingDialsPerConnection),
    h2.maxConcurrentStreams,
  );
  return {
    host: opts.listen.host,
    port,
    tls,
    acceptedTrustDomains: [...opts.acceptedTrustDomains],
    authorize: opts.authorize,
    audit: opts.audit,
    observer: opts.observer,
    destinations,
    router,
    hboneUpstream: opts.hboneUpstream ?? null,
    denyStatus,
    connectTimeoutMs,
    handshakeTimeoutMs,
    idleTimeoutMs,
    h2,
    headerAuditPolicy: typeof headerAuditPolicyOpt === 'function' ? headerAuditPolicyOpt : () => headerAuditPolicyOpt,
    maxConnections,
    upstream,
    maxPendingDials,
    log: opts.log,
    snapshotInfo: opts.snapshotInfo ?? (() => EMPTY_SNAPSHOT),
  };
}
