/**
 * Strict loader for `kind: GatewayConfig` YAML. Parse, don't validate: the file becomes a typed
 * partial config or a list of diagnostics, each at `file:line:col` with its field path, so an
 * operator fixes every mistake in one pass. Unknown fields are errors (a typo such as `listn:`
 * must never be silently ignored and leave the gateway on a default).
 *
 * Relative paths in the file are resolved against the file's directory, so a config and the
 * policies beside it can be moved together.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isMap } from 'yaml';
import { WaygateError, formatDiagnostic, type Diagnostic } from '../errors.ts';
import {
  parseAllowDestinations, parseCidr, parseDialAddress, parseHostPort, parsePort, parseRouteKey, parseRouteTarget, isLoopbackHost,
} from './address.ts';
import {
  CONFIG_WORDING, describe, report, scalarValue, singleDocument, walkContext, yamlWalker, type V as WalkV, type WalkContext, type YamlNode,
} from './yaml-walk.ts';
import { RANGES, bounds, formatRange } from './ranges.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import {
  CONFIG_API_VERSION, CONFIG_KIND, ISTIO_CA_DEFAULTS, ISTIO_CA_KEY_ALGORITHMS, LOG_LEVELS, type DestinationAllow, type GatewayConfig, type IstioCaConfig,
  type IstioCaKeyAlgorithm, type KubernetesDiscoveryConfig,
} from './schema.ts';
import { didYouMean } from '../util/suggest.ts';

/** A deep partial of the config: what one source (file or flags) sets. */
export type ConfigLayer = {
  [K in keyof GatewayConfig]?: GatewayConfig[K] extends unknown[]
    ? GatewayConfig[K]
    : GatewayConfig[K] extends object
      ? Partial<GatewayConfig[K]>
      : GatewayConfig[K];
};

/** The config could not be loaded; every problem found is in `diagnostics`. */
export class ConfigError extends WaygateError {
  readonly diagnostics: readonly Diagnostic[];
  constructor(diagnostics: readonly Diagnostic[]) {
    super('WG_CONFIG', `${diagnostics.length} config error(s):\n` + diagnostics.map(formatDiagnostic).join('\n'));
    this.name = 'ConfigError';
    this.diagnostics = diagnostics;
  }
}

/** The config's walk context: relative paths resolve against `baseDir` (the file's directory). */
interface Cx extends WalkContext {
  baseDir: string;
}

type V<T> = WalkV<T, Cx>;

const { str, int, bool, oneOf, list, object } = yamlWalker<Cx>();

const filePath: V<string> = (node, at, cx) => {
  const v = str((s) => (s === '' ? 'must not be empty' : null))(node, at, cx);
  return v === undefined ? undefined : path.resolve(cx.baseDir, v);
};

const hostPort = (opts: { loopbackOnly?: boolean } = {}): V<string> =>
  str((s) => {
    const hp = parseHostPort(s);
    if (!hp.ok) return hp.message;
    if (opts.loopbackOnly && !isLoopbackHost(hp.value.host)) {
      return `"${s}" is not a loopback address: the admin API can change the gateway's state and must never be reachable from the network`;
    }
    return null;
  });

const port: V<number> = (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'number') return report(cx, node, at, `expected a port number, got ${describe(node)}`);
  const p = parsePort(v);
  if (!p.ok) return report(cx, node, at, p.message);
  return p.value;
};

const destinationAllow: V<DestinationAllow> = (node, at, cx) => {
  const o = object<Required<DestinationAllow>>({
    cidr: str((s) => { const c = parseCidr(s); return c.ok ? null : c.message; }),
    ports: list(port),
  })(node, at, cx);
  if (o === undefined) return undefined;
  if (o.cidr === undefined) return report(cx, node, `${at}.cidr`, 'missing required field "cidr"');
  if (o.ports !== undefined && o.ports.length === 0) {
    return report(cx, node, `${at}.ports`, 'an empty port list allows nothing; omit "ports" to allow every port');
  }
  return o.ports ? { cidr: o.cidr, ports: o.ports } : { cidr: o.cidr };
};

const routes: V<Record<string, string>> = (node, at, cx) => {
  if (!isMap(node)) return report(cx, node, at, `expected a mapping of "host:port": "ip:port", got ${describe(node)}`);
  const out: Record<string, string> = {};
  for (const pair of node.items) {
    const keyNode = pair.key as YamlNode | null;
    const key = scalarValue(keyNode);
    const keyPath = `${at}["${String(key)}"]`;
    if (typeof key !== 'string') { report(cx, keyNode, at, `route keys are "host:port" strings, got ${describe(keyNode)}`); continue; }
    const k = parseRouteKey(key);
    if (!k.ok) { report(cx, keyNode, keyPath, k.message); continue; }
    const v = str((s) => { const t = parseRouteTarget(s); return t.ok ? null : t.message; })(pair.value as YamlNode | null, keyPath, cx);
    if (v !== undefined) out[`${k.value.host}:${k.value.port}`] = v;
  }
  return out;
};

const workers: V<number | 'auto'> = (node, at, cx) => {
  const v = scalarValue(node);
  if (v === 'auto') return 'auto';
  const r = RANGES.workers;
  if (typeof v === 'number' && Number.isInteger(v) && v >= r.min && v <= r.max) return v;
  return report(cx, node, at, `expected a worker count ${formatRange(r)} or "auto", got ${describe(node)}`);
};

const headerName = str((s) => (/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(s) ? null : `"${s}" is not a lower-case header name`));

const day = 86_400_000;

/** RFC 1123 label: what a Kubernetes namespace name is. */
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A label key (optional DNS-subdomain prefix) or value, as the selector grammar names them. */
const SELECTOR_KEY = String.raw`(?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?`;
const SELECTOR_VALUE = String.raw`(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?`;
const SELECTOR_TERM = new RegExp(
  String.raw`^\s*(?:!?\s*${SELECTOR_KEY}|${SELECTOR_KEY}\s*(?:==?|!=)\s*${SELECTOR_VALUE}|${SELECTOR_KEY}\s+(?:in|notin)\s*\(\s*${SELECTOR_VALUE}(?:\s*,\s*${SELECTOR_VALUE})*\s*\))\s*$`,
);

/**
 * Checks a label selector's syntax (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors:
 * `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated) so a typo is a
 * load error here rather than a 400 from the API server on every retry.
 */
function selectorProblem(s: string): string | null {
  if (s.trim() === '') return null;
  // Commas inside in/notin parentheses do not separate terms.
  const terms = s.split(/,(?![^(]*\))/);
  const bad = terms.find((t) => !SELECTOR_TERM.test(t));
  return bad === undefined ? null : `"${bad.trim()}" is not a label selector term (k=v, k!=v, k, !k, k in (a,b), k notin (a,b))`;
}

const kubernetesDiscovery: V<KubernetesDiscoveryConfig | null> = (node, at, cx) => {
  // null (what --print-config shows by default) is "off", so the printed config loads.
  if (scalarValue(node) === null && node !== null && !isMap(node)) return null;
  const o = object<KubernetesDiscoveryConfig>({
    namespaces: (n, a, c) => {
      const before = c.diags.length;
      const v = list(str((s) => (NAMESPACE_RE.test(s) ? null : `"${s}" is not a namespace name (RFC 1123 label)`)))(n, a, c);
      if (v === undefined || c.diags.length > before) return undefined; // each bad name is reported already
      if (v.length === 0) return report(c, n, a, 'name at least one namespace: discovery watches only the namespaces listed (RBAC is granted per namespace)');
      const dup = v.find((x, i) => v.indexOf(x) !== i);
      if (dup !== undefined) return report(c, n, a, `namespace "${dup}" is listed twice`);
      return v;
    },
    labelSelector: str(selectorProblem),
    clusterDomain: str((s) => (/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s) ? null : `"${s}" is not a DNS domain`)),
    kubeconfig: ((n, a, c) => (scalarValue(n) === null && n !== null ? null : filePath(n, a, c))) as V<string | null>,
  })(node, at, cx);
  if (o === undefined) return undefined;
  if (o.namespaces === undefined) {
    // Present but invalid is reported at the field already.
    return isMap(node) && node.has('namespaces') ? undefined : report(cx, node, `${at}.namespaces`, 'missing required field "namespaces"');
  }
  return { namespaces: o.namespaces, labelSelector: o.labelSelector ?? '', clusterDomain: o.clusterDomain ?? 'cluster.local', kubeconfig: o.kubeconfig ?? null };
};

/** DNS name (RFC 1123 labels, dot-separated): what istiod's serving certificate names. */
const DNS_NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** `tls.istioCa.keyAlgorithm`: exactly as istio-agent's ECC_SIGNATURE_ALGORITHM spells it, with a hint for another case or a typo. */
const keyAlgorithm: V<IstioCaKeyAlgorithm> = (node, at, cx) => {
  const v = scalarValue(node);
  if ((ISTIO_CA_KEY_ALGORITHMS as readonly unknown[]).includes(v)) return v as IstioCaKeyAlgorithm;
  const hint = typeof v === 'string' ? didYouMean(v, ISTIO_CA_KEY_ALGORITHMS) : '';
  return report(cx, node, at, CONFIG_WORDING.notOneOf(ISTIO_CA_KEY_ALGORITHMS, node) + hint);
};

const istioCa: V<IstioCaConfig | null> = (node, at, cx) => {
  // null (what --print-config shows by default) is "off": the certificate comes from files.
  if (scalarValue(node) === null && node !== null && !isMap(node)) return null;
  const o = object<IstioCaConfig>({
    address: str((s) => { const a = parseDialAddress(s); return a.ok ? null : a.message; }),
    serverName: ((n, a, c) => (scalarValue(n) === null && n !== null ? null
      : str((s) => (DNS_NAME_RE.test(s) ? null : `"${s}" is not a DNS name (the name in istiod's serving certificate, e.g. istiod.istio-system.svc)`))(n, a, c))) as V<string | null>,
    tokenFile: filePath,
    clusterId: str((s) => (s.trim() === '' ? 'must not be empty (Istio\'s default cluster ID is "Kubernetes")' : null)),
    identity: ((n, a, c) => (scalarValue(n) === null && n !== null ? null : str((s) => {
      const id = parseSpiffeId(s);
      if (id === null) return `"${s}" is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`;
      return id.namespace === '' ? `"${s}" is not an Istio workload identity: istiod issues spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` : null;
    })(n, a, c))) as V<string | null>,
    // istiod refuses lifetimes above its MAX_WORKLOAD_CERT_TTL (90 days by default); under a
    // minute, renewal at half the lifetime would hammer the CA.
    requestedTtlMs: int(60_000, 90 * day),
    requestTimeoutMs: int(1, 600_000),
    keyAlgorithm,
  })(node, at, cx);
  if (o === undefined) return undefined;
  return { ...ISTIO_CA_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as IstioCaConfig;
};

/** The schema of `spec`: one validator per field, strict at every level. */
const specSchema = object<GatewayConfig>({
  listen: hostPort(),
  tls: object<GatewayConfig['tls']>({
    certFile: filePath,
    keyFile: filePath,
    trustBundleFiles: list(filePath),
    allowTls12: bool,
    istioCa,
  }) as V<GatewayConfig['tls']>,
  trustDomains: list(str((s) => (/^[a-z0-9._-]+$/.test(s) ? null : `"${s}" is not a SPIFFE trust domain (lower-case letters, digits, . _ -)`))),
  policies: object<GatewayConfig['policies']>({
    paths: list(filePath),
    watch: bool,
    debounceMs: int(...bounds('policies.debounceMs')),
  }) as V<GatewayConfig['policies']>,
  defaultAction: oneOf(['ALLOW', 'DENY'] as const),
  denyStatus: oneOf([401, 403] as const),
  destinations: object<GatewayConfig['destinations']>({
    allow: list(destinationAllow),
    routes,
  }) as V<GatewayConfig['destinations']>,
  timeouts: object<GatewayConfig['timeouts']>({
    connectTimeoutMs: int(...bounds('timeouts.connectTimeoutMs')),
    handshakeTimeoutMs: int(...bounds('timeouts.handshakeTimeoutMs')),
    drainTimeoutMs: int(...bounds('timeouts.drainTimeoutMs')),
    idleTimeoutMs: int(...bounds('timeouts.idleTimeoutMs')),
  }) as V<GatewayConfig['timeouts']>,
  limits: object<GatewayConfig['limits']>({
    maxConnections: int(...bounds('limits.maxConnections')),
    maxStreamsPerConnection: int(...bounds('limits.maxStreamsPerConnection')),
    maxHeaderListBytes: int(...bounds('limits.maxHeaderListBytes')),
    // Above maxStreamsPerConnection it is clamped once the layers are merged (schema.ts
    // withEffectiveLimits): the two may come from different layers (defaults, file, flags).
    maxPendingDialsPerConnection: int(...bounds('limits.maxPendingDialsPerConnection')),
  }) as V<GatewayConfig['limits']>,
  audit: object<GatewayConfig['audit']>({
    // "-" is stdout; anything else is a file path, resolved against the config file's directory
    // like every other path in the file (a relative path used to resolve against the cwd).
    destination: ((node, at, cx) => {
      const v = str((s) => (s === '' ? 'must be "-" (stdout) or a file path' : null))(node, at, cx);
      return v === undefined || v === '-' ? v : path.resolve(cx.baseDir, v);
    }) as V<string>,
    headers: object<GatewayConfig['audit']['headers']>({ allow: list(headerName), redact: list(headerName) }) as V<GatewayConfig['audit']['headers']>,
    sync: oneOf(['none', 'batch', 'always'] as const),
    // null (as --print-config shows the default): by destination, deny for a file, allow for stdout.
    onFailure: ((node, at, cx) => (scalarValue(node) === null && node !== null ? null : oneOf(['deny', 'allow'] as const)(node, at, cx))) as V<'deny' | 'allow' | null>,
  }) as V<GatewayConfig['audit']>,
  log: object<GatewayConfig['log']>({ level: oneOf(LOG_LEVELS) }) as V<GatewayConfig['log']>,
  admin: object<GatewayConfig['admin']>({
    readyAddress: hostPort(),
    metricsAddress: hostPort(),
    adminAddress: hostPort({ loopbackOnly: true }),
  }) as V<GatewayConfig['admin']>,
  workers,
  proxyProtocol: bool,
  discovery: object<GatewayConfig['discovery']>({
    // null (what --print-config shows by default) is "no mesh file", so the printed config loads.
    meshFile: ((node, at, cx) => (scalarValue(node) === null && node !== null ? null : filePath(node, at, cx))) as V<string | null>,
    kubernetes: kubernetesDiscovery,
    allowDirect: bool,
  }) as V<GatewayConfig['discovery']>,
  upstream: object<GatewayConfig['upstream']>({
    allowPlaintext: bool,
    // RFC 9113 §6.5.2 SETTINGS_MAX_CONCURRENT_STREAMS; the destination's own setting still applies.
    maxStreamsPerConnection: int(...bounds('upstream.maxStreamsPerConnection')),
    poolIdleTimeoutMs: int(...bounds('upstream.poolIdleTimeoutMs')),
  }) as V<GatewayConfig['upstream']>,
  sandwich: object<GatewayConfig['sandwich']>({
    // null (what --print-config shows by default) is off. Loopback only: the PROXY header is
    // believed because only the pod's own ztunnel can reach a loopback port (docs/waypoint.md).
    listen: ((node, at, cx) => (scalarValue(node) === null && node !== null ? null : str((s) => {
      const hp = parseHostPort(s);
      if (!hp.ok) return hp.message;
      return isLoopbackHost(hp.value.host) ? null : `"${s}" is not a loopback address: the PROXY header's client identity is trusted only from the pod's own ztunnel, which connects over loopback`;
    })(node, at, cx))) as V<string | null>,
    headerTimeoutMs: int(...bounds('sandwich.headerTimeoutMs')),
  }) as V<GatewayConfig['sandwich']>,
  registration: object<GatewayConfig['registration']>({
    enabled: bool,
    // Kubernetes object names: a GatewayClass and a Service are DNS labels/subdomains, a
    // controllerName a domain-prefixed path (Gateway API GatewayController).
    gatewayClassName: str((s) => (/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(s) ? null : `"${s}" is not a GatewayClass name (lower-case DNS subdomain)`)),
    controllerName: str((s) => (/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$/.test(s) ? null : `"${s}" is not a controller name (domain/path, e.g. waygate.dev/gateway-controller)`)),
    namespace: str((s) => (s === '' || /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(s) ? null : `"${s}" is not a namespace name (RFC 1123 label; "" for the pod's own)`)),
    serviceName: str((s) => (/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(s) ? null : `"${s}" is not a Service name (RFC 1035 label)`)),
  }) as V<GatewayConfig['registration']>,
});

/**
 * Rules across fields of one file, checked once every field is valid. Direct dials are plain TCP:
 * `discovery.allowDirect` without `upstream.allowPlaintext` would be a setting that does nothing
 * but refuse, so it is an error at the field that asks for it.
 */
function checkAcrossFields(spec: ConfigLayer, root: YamlNode, cx: Cx): void {
  if (spec.discovery?.allowDirect === true && spec.upstream?.allowPlaintext !== true) {
    const node = isMap(root) ? (root.getIn(['spec', 'discovery', 'allowDirect'], true) as YamlNode) : null;
    report(cx, node, 'spec.discovery.allowDirect', 'direct dials are plain TCP: set upstream.allowPlaintext too');
  }
  if (spec.tls?.istioCa && (spec.tls.certFile !== undefined || spec.tls.keyFile !== undefined)) {
    const node = isMap(root) ? (root.getIn(['spec', 'tls', 'istioCa'], true) as YamlNode) : null;
    report(cx, node, 'spec.tls.istioCa', 'the certificate has one source: remove tls.certFile and tls.keyFile, or tls.istioCa (trustBundleFiles stays: it is the mesh root)');
  }
  if (spec.discovery?.kubernetes && spec.discovery.meshFile) {
    const node = isMap(root) ? (root.getIn(['spec', 'discovery', 'kubernetes'], true) as YamlNode) : null;
    report(cx, node, 'spec.discovery.kubernetes', 'discovery has one source: set meshFile or kubernetes, not both');
  }
}

/**
 * Rules across layers, checked on the merged config (src/config/resolve.ts): flags may add to a
 * file. `--mesh` with a file's `discovery.kubernetes` names two sources; `--kubeconfig` sets the
 * credentials of `discovery.kubernetes`, which must then be configured. Throws ConfigError.
 */
export function checkMergedDiscovery(config: Readonly<GatewayConfig>, file: string | undefined): void {
  const k = config.discovery.kubernetes as Partial<KubernetesDiscoveryConfig> | null;
  const at = (path: string, message: string): Diagnostic => ({ code: 'WG_CONFIG', message, file: file ?? '(flags)', line: 1, col: 1, path, severity: 'error' });
  if (k !== null && k.namespaces === undefined) {
    throw new ConfigError([at('spec.discovery.kubernetes', '--kubeconfig is the credentials of Kubernetes discovery, which is not configured: set discovery.kubernetes.namespaces in the config file')]);
  }
  if (k !== null && config.discovery.meshFile !== null) {
    throw new ConfigError([at('spec.discovery', 'discovery has one source: --mesh (discovery.meshFile) and discovery.kubernetes are both set')]);
  }
}

/**
 * `--cert`/`--key` with a file's `tls.istioCa` name two sources of the certificate; the flags
 * would be ignored without a word. Throws ConfigError.
 */
export function checkMergedTls(config: Readonly<GatewayConfig>, flags: ConfigLayer | undefined, file: string | undefined): void {
  if (config.tls.istioCa === null || (flags?.tls?.certFile === undefined && flags?.tls?.keyFile === undefined)) return;
  throw new ConfigError([{
    code: 'WG_CONFIG', file: file ?? '(flags)', line: 1, col: 1, path: 'spec.tls.istioCa', severity: 'error',
    message: 'the certificate has one source: --cert/--key name files, and tls.istioCa asks the mesh CA; drop the flags or tls.istioCa',
  }]);
}

const documentSchema = object<{ apiVersion: string; kind: string; metadata: { name: string }; spec: ConfigLayer }>({
  apiVersion: oneOf([CONFIG_API_VERSION] as const),
  kind: oneOf([CONFIG_KIND] as const),
  metadata: object<{ name: string }>({ name: str() }) as V<{ name: string }>,
  spec: specSchema as V<ConfigLayer>,
});

/**
 * Parses config YAML text. `file` names it in diagnostics; relative paths resolve against
 * `baseDir` (the file's directory). Throws ConfigError with every problem found.
 */
export function parseConfigText(text: string, file: string, baseDir: string = path.dirname(path.resolve(file))): ConfigLayer {
  const cx: Cx = { ...walkContext('WG_CONFIG', file, text), baseDir };
  const root = singleDocument(text, cx, 'a config file holds exactly one GatewayConfig document');
  if (root === undefined) throw new ConfigError(cx.diags);
  const doc = documentSchema(root, '', cx);
  if (doc && cx.diags.length === 0) {
    for (const field of ['apiVersion', 'kind', 'spec'] as const) {
      if (doc[field] === undefined) report(cx, root, field, `missing required field "${field}"`);
    }
    if (doc.spec) checkAcrossFields(doc.spec, root, cx);
  }
  if (cx.diags.length) throw new ConfigError(cx.diags);
  return doc!.spec!;
}

/** Reads and parses a config file. */
export function loadConfigFile(file: string): ConfigLayer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{
      code: 'WG_CONFIG', message: `cannot read config: ${(err as Error).message}`, file, line: 1, col: 1, path: '', severity: 'error',
    }]);
  }
  return parseConfigText(text, file);
}

/** Exported for the flag parser, which accepts the same syntax. */
export { parseAllowDestinations };
