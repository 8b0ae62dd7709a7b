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
import { isMap, isScalar, isSeq, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { WaygateError, formatDiagnostic, type Diagnostic } from '../errors.ts';
import { TextLines } from '../util/text-lines.ts';
import {
  parseAllowDestinations, parseCidr, parseHostPort, parsePort, parseRouteKey, parseRouteTarget, isLoopbackHost,
} from './address.ts';
import { CONFIG_API_VERSION, CONFIG_KIND, LOG_LEVELS, type DestinationAllow, type GatewayConfig } from './schema.ts';

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

interface Cx {
  file: string;
  lines: TextLines;
  diags: Diagnostic[];
  baseDir: string;
}

function report(cx: Cx, node: YamlNode | null | undefined, at: string, message: string): undefined {
  const offset = node?.range?.[0] ?? 0;
  const pos = cx.lines.linePos(offset);
  cx.diags.push({
    code: 'WG_CONFIG', message, file: cx.file, line: Math.max(pos.line, 1), col: pos.col, path: at, severity: 'error',
  });
  return undefined;
}

type V<T> = (node: YamlNode | null, at: string, cx: Cx) => T | undefined;

function scalarValue(node: YamlNode | null): unknown {
  return isScalar(node) ? node.value : undefined;
}

const str = (check?: (s: string) => string | null): V<string> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'string') return report(cx, node, at, `expected a string, got ${describe(node)}`);
  const problem = check?.(v);
  if (problem) return report(cx, node, at, problem);
  return v;
};

const filePath: V<string> = (node, at, cx) => {
  const v = str((s) => (s === '' ? 'must not be empty' : null))(node, at, cx);
  return v === undefined ? undefined : path.resolve(cx.baseDir, v);
};

const int = (min: number, max: number): V<number> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'number' || !Number.isInteger(v)) return report(cx, node, at, `expected an integer, got ${describe(node)}`);
  if (v < min || v > max) return report(cx, node, at, `${v} is out of range ${min}-${max}`);
  return v;
};

const bool: V<boolean> = (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'boolean') return report(cx, node, at, `expected true or false, got ${describe(node)}`);
  return v;
};

function oneOf<T extends string | number>(values: readonly T[]): V<T> {
  return (node, at, cx) => {
    const v = scalarValue(node);
    if (!values.includes(v as T)) return report(cx, node, at, `must be one of ${values.join(', ')}; got ${describe(node)}`);
    return v as T;
  };
}

function list<T>(item: V<T>): V<T[]> {
  return (node, at, cx) => {
    if (!isSeq(node)) return report(cx, node, at, `expected a list, got ${describe(node)}`);
    const out: T[] = [];
    node.items.forEach((child, i) => {
      const v = item(child as YamlNode, `${at}[${i}]`, cx);
      if (v !== undefined) out.push(v);
    });
    return out;
  };
}

/** A strict mapping: every key must be declared; returns only the keys present. */
function object<T extends object>(fields: { [K in keyof T]-?: V<T[K]> }): V<Partial<T>> {
  return (node, at, cx) => {
    if (!isMap(node)) return report(cx, node, at, `expected a mapping, got ${describe(node)}`);
    const out: Partial<T> = {};
    const seen = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const key = scalarValue(keyNode);
      const keyPath = at ? `${at}.${String(key)}` : String(key);
      if (typeof key !== 'string') {
        report(cx, keyNode, at, `keys must be strings, got ${describe(keyNode)}`);
        continue;
      }
      if (seen.has(key)) {
        report(cx, keyNode, keyPath, `duplicate field "${key}"`);
        continue;
      }
      seen.add(key);
      if (!Object.prototype.hasOwnProperty.call(fields, key)) {
        const known = Object.keys(fields).join(', ');
        report(cx, keyNode, keyPath, `unknown field "${key}" (known: ${known})`);
        continue;
      }
      const v = (fields as Record<string, V<unknown>>)[key]!(pair.value as YamlNode | null, keyPath, cx);
      if (v !== undefined) (out as Record<string, unknown>)[key] = v;
    }
    return out;
  };
}

function describe(node: YamlNode | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return node.value === null ? 'null' : `${typeof node.value} ${JSON.stringify(node.value)}`;
  return 'an unsupported node';
}

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
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1024) return v;
  return report(cx, node, at, `expected a worker count 1-1024 or "auto", got ${describe(node)}`);
};

const headerName = str((s) => (/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(s) ? null : `"${s}" is not a lower-case header name`));

const day = 86_400_000;

/** The schema of `spec`: one validator per field, strict at every level. */
const specSchema = object<GatewayConfig>({
  listen: hostPort(),
  tls: object<GatewayConfig['tls']>({
    certFile: filePath,
    keyFile: filePath,
    trustBundleFiles: list(filePath),
    allowTls12: bool,
  }) as V<GatewayConfig['tls']>,
  trustDomains: list(str((s) => (/^[a-z0-9._-]+$/.test(s) ? null : `"${s}" is not a SPIFFE trust domain (lower-case letters, digits, . _ -)`))),
  policies: object<GatewayConfig['policies']>({
    paths: list(filePath),
    watch: bool,
    debounceMs: int(0, 60_000),
  }) as V<GatewayConfig['policies']>,
  defaultAction: oneOf(['ALLOW', 'DENY'] as const),
  denyStatus: oneOf([401, 403] as const),
  destinations: object<GatewayConfig['destinations']>({
    allow: list(destinationAllow),
    routes,
  }) as V<GatewayConfig['destinations']>,
  timeouts: object<GatewayConfig['timeouts']>({
    connectTimeoutMs: int(1, day),
    handshakeTimeoutMs: int(1, day),
    drainTimeoutMs: int(0, day),
    idleTimeoutMs: int(0, 30 * day),
  }) as V<GatewayConfig['timeouts']>,
  limits: object<GatewayConfig['limits']>({
    maxConnections: int(0, 10_000_000),
    maxStreamsPerConnection: int(1, 2 ** 31 - 1),
    // RFC 9113 §6.5.2 leaves the value open; below 1 KiB no real CONNECT fits.
    maxHeaderListBytes: int(1_024, 16 * 1024 * 1024),
    // 0 would let no CONNECT dial; "unlimited" is not offered: the cap is what bounds a peer's
    // dials. Above maxStreamsPerConnection it is clamped once the layers are merged (schema.ts
    // withEffectiveLimits): the two may come from different layers (defaults, file, flags).
    maxPendingDialsPerConnection: int(1, 2 ** 31 - 1),
  }) as V<GatewayConfig['limits']>,
  audit: object<GatewayConfig['audit']>({
    // "-" is stdout; anything else is a file path, resolved against the config file's directory
    // like every other path in the file (a relative path used to resolve against the cwd).
    destination: ((node, at, cx) => {
      const v = str((s) => (s === '' ? 'must be "-" (stdout) or a file path' : null))(node, at, cx);
      return v === undefined || v === '-' ? v : path.resolve(cx.baseDir, v);
    }) as V<string>,
    headers: object<GatewayConfig['audit']['headers']>({ allow: list(headerName), redact: list(headerName) }) as V<GatewayConfig['audit']['headers']>,
  }) as V<GatewayConfig['audit']>,
  log: object<GatewayConfig['log']>({ level: oneOf(LOG_LEVELS) }) as V<GatewayConfig['log']>,
  admin: object<GatewayConfig['admin']>({
    readyAddress: hostPort(),
    metricsAddress: hostPort(),
    adminAddress: hostPort({ loopbackOnly: true }),
  }) as V<GatewayConfig['admin']>,
  workers,
  proxyProtocol: bool,
});

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
  const lines = new TextLines(text);
  const cx: Cx = { file, lines, diags: [], baseDir };
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [];
  for (const doc of list) {
    for (const e of doc.errors) {
      const pos = lines.linePos(e.pos[0]);
      cx.diags.push({ code: 'WG_CONFIG', message: e.message.split('\n')[0]!, file, line: Math.max(pos.line, 1), col: pos.col, path: '', severity: 'error' });
    }
  }
  if (cx.diags.length) throw new ConfigError(cx.diags);
  const nonEmpty = list.filter((d) => d.contents !== null);
  if (nonEmpty.length !== 1) {
    const second = nonEmpty[1]?.contents as YamlNode | undefined;
    report(cx, second ?? null, '', nonEmpty.length === 0 ? 'the file holds no document' : 'a config file holds exactly one GatewayConfig document');
    throw new ConfigError(cx.diags);
  }
  const root = nonEmpty[0]!.contents as YamlNode;
  const doc = documentSchema(root, '', cx);
  if (doc && cx.diags.length === 0) {
    for (const field of ['apiVersion', 'kind', 'spec'] as const) {
      if (doc[field] === undefined) report(cx, root, field, `missing required field "${field}"`);
    }
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
