/**
 * The gateway configuration (`kind: GatewayConfig`): its typed shape and the two sets of defaults.
 *
 * Two profiles, chosen by whether a config file is given:
 * - **production** (`waygate serve --config FILE`): Istio's ports on every interface (15008 HBONE,
 *   15021 readiness, 15020 metrics), the admin API on loopback (15000), certificates and policies
 *   at the paths the Kubernetes example mounts, and *no* allowed destination until the operator
 *   lists one: an unconfigured gateway refuses every tunnel rather than becoming an open proxy.
 * - **embedded** (`waygate serve` with no `--config`, what `npm start` runs): everything on
 *   127.0.0.1, a development PKI minted into `.waygate/pki/` on first run, the example `policies/`,
 *   and only loopback destinations allowed. It exists so a fresh clone serves with no set-up and
 *   can never be reached from, or forward to, another machine.
 *
 * Flags override either profile. Every duration carries its unit in the name.
 */
import os from 'node:os';
import { DEFAULT_HEADER_AUDIT_POLICY } from '../audit/redact.ts';
import type { DefaultAction } from '../policy/decision.ts';
import { RANGES } from './ranges.ts';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';

export const CONFIG_API_VERSION = 'waygate.dev/v1alpha1';
export const CONFIG_KIND = 'GatewayConfig';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** One allowed destination network: a CIDR and, optionally, the only ports allowed in it. */
export interface DestinationAllow {
  cidr: string;
  /** Allowed ports (1-65535); every port when omitted. */
  ports?: number[];
}

export interface GatewayConfig {
  /** HBONE listener, `host:port` (`[v6]:port` for IPv6). */
  listen: string;
  tls: {
    /** The certificate chain (leaf first) when the material comes from files; unread with `istioCa`. */
    certFile: string;
    keyFile: string;
    /**
     * PEM files whose certificates are the trust anchors client chains must verify against. With
     * `istioCa`, the mesh root (Istio's `istio-ca-root-cert` ConfigMap), which also verifies istiod
     * and the certificates it issues.
     */
    trustBundleFiles: string[];
    /** Accept TLS 1.2 clients too (ztunnel speaks only TLS 1.3). */
    allowTls12: boolean;
    /**
     * Ask istiod's CA for the gateway's certificate instead of reading `certFile`/`keyFile`
     * (docs/kubernetes.md, "Certificates from the mesh CA"); null: files.
     */
    istioCa: IstioCaConfig | null;
  };
  /** Trust domains whose SPIFFE IDs are accepted; any other is refused at the handshake. */
  trustDomains: string[];
  policies: {
    /** Policy files or directories, loaded as one snapshot. */
    paths: string[];
    /** Reload on change (inotify on the directories; ConfigMap `..data` swaps included). */
    watch: boolean;
    /** Quiet period after the last file event before a reload is attempted. */
    debounceMs: number;
  };
  /** Verdict when no enforced ALLOW policy applies (docs/design.md §3 step 3). */
  defaultAction: DefaultAction;
  /** Status answered on a policy deny (ztunnel: 401). */
  denyStatus: 401 | 403;
  destinations: {
    /** Networks the gateway may dial; nothing outside them is ever dialed. */
    allow: DestinationAllow[];
    /** `host:port` authority -> `ip:port` to dial; `host:port` authorities resolve only through here. */
    routes: Record<string, string>;
  };
  timeouts: {
    /** Upstream TCP connect timeout (503 after it). */
    connectTimeoutMs: number;
    /** TLS handshake plus HTTP/2 preface must finish within this. */
    handshakeTimeoutMs: number;
    /** How long a drain waits for tunnels before resetting them. */
    drainTimeoutMs: number;
    /** Close a tunnel without traffic in either direction for this long; 0 = off (as in ztunnel). */
    idleTimeoutMs: number;
  };
  limits: {
    /** Concurrent TLS connections; further ones are refused and counted. 0 = unlimited. */
    maxConnections: number;
    /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. */
    maxStreamsPerConnection: number;
    /** HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE. */
    maxHeaderListBytes: number;
    /**
     * Upstream dials in flight per HTTP/2 connection; a CONNECT beyond it waits for a slot (in
     * arrival order, within `timeouts.connectTimeoutMs` of its arrival) and is answered 503
     * (`upstream_failed`) only if none frees in time. Bounds the sockets one peer can make the
     * gateway dial at once. Default 100 (ztunnel opens at most 100 streams per connection). At most
     * `maxStreamsPerConnection`: a larger value is clamped to it ({@link withEffectiveLimits}).
     */
    maxPendingDialsPerConnection: number;
  };
  audit: {
    /** `-` for stdout, else a file path (appended). */
    destination: string;
    headers: { allow: string[]; redact: string[] };
    /**
     * An allowed CONNECT is answered once its decision record was handed to the operating system;
     * `batch` also fsyncs once per group of records, `always` once per record (docs/operating.md,
     * "Audit log guarantees"). Default `none`.
     */
    sync: 'none' | 'batch' | 'always';
    /**
     * What new CONNECTs get while the audit log cannot be written: `deny` (`audit_unavailable`,
     * not ready) or `allow` (through, records dropped and counted). null: `deny` for a file,
     * `allow` for stdout (docs/operating.md explains the blast radius of each).
     */
    onFailure: 'deny' | 'allow' | null;
  };
  log: { level: LogLevel };
  admin: {
    /** `/healthz/ready` listener. */
    readyAddress: string;
    /** `/metrics` listener. */
    metricsAddress: string;
    /** Debug/admin listener; must be a loopback address. */
    adminAddress: string;
  };
  /** Processes serving the listener: a count, or `auto` (one per available core). */
  workers: number | 'auto';
  /** Send a PROXY protocol v2 header (client address + SPIFFE ID TLV 0xD0) to the upstream. */
  proxyProtocol: boolean;
  /** Where the gateway learns the mesh's services and workloads (docs/design.md §6). */
  discovery: {
    /** A `kind: Mesh` file (hot-reloaded), resolved against the config file's directory; null: no discovery. */
    meshFile: string | null;
    /**
     * The Kubernetes API as the source (docs/waypoint.md, "Kubernetes discovery"): Services,
     * EndpointSlices and Pods of `namespaces`, listed and watched. null: off. Exclusive with
     * `meshFile`.
     */
    kubernetes: KubernetesDiscoveryConfig | null;
    /**
     * Dial a destination discovery does not know as its `:authority`, over plain TCP. Off: such a
     * CONNECT is refused (503), so a lagging discovery source never lets a tunnel bypass the rules
     * on `destination.namespace` or leave the mesh's mTLS. Needs `upstream.allowPlaintext`.
     */
    allowDirect: boolean;
  };
  /**
   * Sandwich mode (docs/waypoint.md): a loopback listener taking streams from the pod's own
   * ztunnel, each starting with a PROXY v2 header (src/sandwich/listener.ts). Needs discovery.
   */
  sandwich: {
    /** Loopback `host:port` (Istio's convention: 127.0.0.1:15088); null: off. */
    listen: string | null;
    /** A stream whose PROXY header is not complete this long after accept is closed. */
    headerTimeoutMs: number;
  };
  upstream: {
    /** Plain TCP upstreams: workloads with `protocol: TCP`, and direct dials. */
    allowPlaintext: boolean;
    /** HBONE streams per pooled connection to a destination's ztunnel (ztunnel's own limit: 100). */
    maxStreamsPerConnection: number;
    /** Close a pooled HBONE connection idle (no stream) this long. */
    poolIdleTimeoutMs: number;
  };
  /**
   * waygate as the controller of its GatewayClass: keeps the status of the Gateways of the class
   * in its namespace true (addresses, Accepted/Programmed), so istiod sends the fronted namespaces'
   * traffic through it (src/kube/gateway-status.ts, docs/kubernetes.md). Off by default.
   */
  registration: {
    enabled: boolean;
    gatewayClassName: string;
    /** The GatewayClass's spec.controllerName; a class naming another controller is left alone. */
    controllerName: string;
    /** The Gateways' namespace; "": the pod's own (POD_NAMESPACE from the Downward API). */
    namespace: string;
    /** The Service in that namespace the Gateway's status address names. */
    serviceName: string;
  };
}

/** `discovery.kubernetes`. */
/**
 * The gateway's certificate from istiod's CA, as istio-agent and ztunnel ask for it: a CSR over
 * gRPC (`IstioCertificateService/CreateCertificate`) authenticated with a projected
 * service-account token of audience `istio-ca`, renewed at half its lifetime.
 */
export interface IstioCaConfig {
  /** istiod's CA endpoint, `host:port` (istio-agent's CA_ADDR; the port is 15012). */
  address: string;
  /** The name istiod's serving certificate is verified for; null: the host of `address`. */
  serverName: string | null;
  /** The projected token (audience `istio-ca`), re-read for every request: the kubelet rotates it. */
  tokenFile: string;
  /** Sent as the `ClusterID` header, as istio-agent sends its CLUSTER_ID (Istio's default: `Kubernetes`). */
  clusterId: string;
  /**
   * The SPIFFE ID asked for; null: `spiffe://<trustDomains[0]>/ns/<POD_NAMESPACE>/sa/<SERVICE_ACCOUNT>`
   * from the environment (the Deployment sets both from the downward API). istiod issues the
   * identity of the token's service account, so the two must agree.
   */
  identity: string | null;
  /** The lifetime asked for (istio-agent's SECRET_TTL, 24 h); istiod may cap it. */
  requestedTtlMs: number;
  /** Deadline of one CreateCertificate call. */
  requestTimeoutMs: number;
  /** The key generated for each request: RSA 2048 (istio-agent's default) or ECDSA P-256 (istio-agent's ECC_SIGNATURE_ALGORITHM=ECDSA). */
  keyAlgorithm: IstioCaKeyAlgorithm;
}

/** The values of `tls.istioCa.keyAlgorithm`, as istio-agent's ECC_SIGNATURE_ALGORITHM names them (unset: RSA). */
export const ISTIO_CA_KEY_ALGORITHMS = ['RSA', 'ECDSA'] as const;
export type IstioCaKeyAlgorithm = (typeof ISTIO_CA_KEY_ALGORITHMS)[number];

export interface KubernetesDiscoveryConfig {
  /** The fronted namespaces (at least one; RBAC is granted per namespace). */
  namespaces: string[];
  /** A label selector applied to Services (`""`: every Service of those namespaces). */
  labelSelector: string;
  /** Hostnames are `<service>.<namespace>.svc.<clusterDomain>`. */
  clusterDomain: string;
  /** A kubeconfig file; null: in-cluster credentials, else `KUBECONFIG`, else ~/.kube/config (src/kube/client.ts). */
  kubeconfig: string | null;
}

/** Whether a discovery source is configured (the gateway then acts as a waypoint: docs/waypoint.md). */
export function discoveryConfigured(config: Readonly<GatewayConfig>): boolean {
  return config.discovery.meshFile !== null || config.discovery.kubernetes !== null;
}

/** Which default set a config was built from. */
export type ConfigProfile = 'production' | 'embedded';

/** Where the embedded profile keeps its state, relative to the working directory. */
export const DEFAULT_STATE_DIR = '.waygate';
/**
 * The embedded profile's development PKI: the directory `waygate certs init|issue` use by default,
 * so `waygate certs issue spiffe://...` signs client certificates the gateway trusts, no flags.
 */
export const DEV_PKI_DIR = `${DEFAULT_STATE_DIR}/pki`;

/**
 * The drain deadline when none is configured, derived like ztunnel's (src/config.rs): from
 * Kubernetes' `TERMINATION_GRACE_PERIOD_SECONDS` minus a margin (5 s above 10 s, else 1 s, at least
 * 1 s) so the gateway resets the rest itself (RST_STREAM, close records, audit flush) before the
 * kubelet's SIGKILL; 5 s otherwise.
 */
export function defaultDrainTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['TERMINATION_GRACE_PERIOD_SECONDS'];
  if (raw === undefined || !/^\d+$/.test(raw.trim())) return 5_000;
  const secs = Number(raw.trim());
  return Math.max(secs > 10 ? secs - 5 : secs - 1, 1) * 1_000;
}

function common(env: NodeJS.ProcessEnv): Omit<GatewayConfig, 'listen' | 'tls' | 'policies' | 'destinations' | 'admin'> {
  return {
    trustDomains: [DEFAULT_TRUST_DOMAIN],
    defaultAction: 'DENY',
    denyStatus: 401,
    // The numeric defaults are the range table's (src/config/ranges.ts), which the libraries use too.
    timeouts: {
      connectTimeoutMs: RANGES['timeouts.connectTimeoutMs'].default,
      handshakeTimeoutMs: RANGES['timeouts.handshakeTimeoutMs'].default,
      drainTimeoutMs: defaultDrainTimeoutMs(env),
      idleTimeoutMs: RANGES['timeouts.idleTimeoutMs'].default,
    },
    limits: {
      maxConnections: RANGES['limits.maxConnections'].default,
      maxStreamsPerConnection: RANGES['limits.maxStreamsPerConnection'].default,
      maxHeaderListBytes: RANGES['limits.maxHeaderListBytes'].default,
      maxPendingDialsPerConnection: RANGES['limits.maxPendingDialsPerConnection'].default,
    },
    audit: {
      destination: '-',
      headers: { allow: [...DEFAULT_HEADER_AUDIT_POLICY.allow], redact: [...DEFAULT_HEADER_AUDIT_POLICY.redact] },
      sync: 'none',
      onFailure: null,
    },
    log: { level: 'info' },
    workers: RANGES.workers.default,
    proxyProtocol: false,
    discovery: { meshFile: null, kubernetes: null, allowDirect: false },
    upstream: {
      allowPlaintext: false,
      maxStreamsPerConnection: RANGES['upstream.maxStreamsPerConnection'].default,
      poolIdleTimeoutMs: RANGES['upstream.poolIdleTimeoutMs'].default,
    },
    sandwich: { listen: null, headerTimeoutMs: RANGES['sandwich.headerTimeoutMs'].default },
    registration: { enabled: false, gatewayClassName: 'waygate', controllerName: 'waygate.dev/gateway-controller', namespace: '', serviceName: 'waygate' },
  };
}

/** The defaults of `tls.istioCa` fields a config leaves out: what istio-agent uses in a default install. */
export const ISTIO_CA_DEFAULTS: Readonly<IstioCaConfig> = Object.freeze({
  address: 'istiod.istio-system.svc:15012',
  serverName: null,
  tokenFile: '/var/run/secrets/tokens/istio-token',
  clusterId: 'Kubernetes',
  identity: null,
  requestedTtlMs: 86_400_000,
  requestTimeoutMs: 10_000,
  keyAlgorithm: 'RSA',
});

/** Defaults under `--config`: what a Kubernetes Deployment wants (see examples/kubernetes/). */
export function productionDefaults(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  return {
    listen: '0.0.0.0:15008',
    tls: {
      // cert-manager's Secret layout (tls.crt, tls.key, ca.crt), mounted by the example Deployment.
      certFile: '/etc/waygate/tls/tls.crt',
      keyFile: '/etc/waygate/tls/tls.key',
      trustBundleFiles: ['/etc/waygate/tls/ca.crt'],
      allowTls12: false,
      istioCa: null,
    },
    policies: { paths: ['/etc/waygate/policies'], watch: true, debounceMs: RANGES['policies.debounceMs'].default },
    destinations: { allow: [], routes: {} },
    admin: { readyAddress: '0.0.0.0:15021', metricsAddress: '0.0.0.0:15020', adminAddress: '127.0.0.1:15000' },
    ...common(env),
  };
}

/**
 * Defaults with no config file (`npm start`): loopback only, dev PKI in `stateDir`, the example
 * policies of the working directory.
 */
export function embeddedDefaults(cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const pki = `${cwd}/${DEV_PKI_DIR}`;
  return {
    listen: '127.0.0.1:15008',
    tls: {
      certFile: `${pki}/server.crt`,
      keyFile: `${pki}/server.key`,
      trustBundleFiles: [`${pki}/root.crt`],
      allowTls12: false,
      istioCa: null,
    },
    policies: { paths: [`${cwd}/policies`], watch: true, debounceMs: RANGES['policies.debounceMs'].default },
    destinations: { allow: [{ cidr: '127.0.0.0/8' }, { cidr: '::1/128' }], routes: {} },
    admin: { readyAddress: '127.0.0.1:15021', metricsAddress: '127.0.0.1:15020', adminAddress: '127.0.0.1:15000' },
    ...common(env),
  };
}

/**
 * The config with the limits that depend on each other as they take effect: a
 * `limits.maxPendingDialsPerConnection` above `limits.maxStreamsPerConnection` is lowered to it.
 * Clamped rather than rejected: a connection never holds more CONNECTs than streams, so any cap at
 * or above the stream limit means the same thing (every stream may dial at once) and nothing the
 * operator wrote is ignored; rejecting would stop a gateway whose operator only lowered
 * `maxStreamsPerConnection` (file or flag) below the dial cap's default or the example's 100. The
 * effective config (`--print-config`, `/debug/config`) shows the value in force.
 */
export function withEffectiveLimits(config: GatewayConfig): GatewayConfig {
  const limits = config.limits;
  if (limits.maxPendingDialsPerConnection <= limits.maxStreamsPerConnection) return config;
  return { ...config, limits: { ...limits, maxPendingDialsPerConnection: limits.maxStreamsPerConnection } };
}

/** `workers: auto` -> one per core the process may use. */
export function resolveWorkerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, os.availableParallelism()) : workers;
}
