/**
 * `waygate serve` flags: each overrides one config field (after the file). Values are validated
 * as they are parsed, so a bad value prints usage and exits 2 before anything starts.
 */
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isLoopbackHost, parseAllowDestinations, parseHostPort, parseRouteKey, parseRouteTarget } from './address.ts';
import type { ConfigLayer } from './load.ts';
import { bounds } from './ranges.ts';
import { LOG_LEVELS, type DestinationAllow, type GatewayConfig, type LogLevel } from './schema.ts';

/** Raw commander values for the serve flags. */
export interface ServeFlagValues {
  config?: string;
  printConfig?: boolean;
  listen?: string;
  cert?: string;
  key?: string;
  trustBundle?: string[];
  trustDomain?: string[];
  policies?: string[];
  watch?: boolean;
  defaultAction?: 'ALLOW' | 'DENY';
  denyStatus?: 401 | 403;
  allowDestinations?: DestinationAllow[];
  route?: Record<string, string>;
  auditLog?: string;
  logLevel?: LogLevel;
  workers?: number | 'auto';
  readyAddress?: string;
  metricsAddress?: string;
  adminAddress?: string;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  drainTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxConnections?: number;
  maxStreamsPerConnection?: number;
  maxPendingDialsPerConnection?: number;
  proxyProtocol?: boolean;
  allowTls12?: boolean;
  mesh?: string;
  kubeconfig?: string;
}

function collect<T>(parse: (s: string) => T) {
  return (value: string, previous: T[] | undefined): T[] => [...(previous ?? []), parse(value)];
}

function address(loopbackOnly = false) {
  return (s: string): string => {
    const hp = parseHostPort(s);
    if (!hp.ok) throw new InvalidArgumentError(hp.message);
    if (loopbackOnly && !isLoopbackHost(hp.value.host)) throw new InvalidArgumentError(`${s} is not a loopback address`);
    return s;
  };
}

function integer(min: number, max: number) {
  return (s: string): number => {
    if (!/^\d+$/.test(s)) throw new InvalidArgumentError(`"${s}" is not a non-negative integer`);
    const n = Number(s);
    if (n < min || n > max) throw new InvalidArgumentError(`${n} is out of range ${min}-${max}`);
    return n;
  };
}

function nonEmpty(s: string): string {
  if (s === '') throw new InvalidArgumentError('must not be empty');
  return s;
}

/** Declares every serve flag on `cmd`. */
export function addServeFlags(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'GatewayConfig YAML (without it: the embedded loopback-only dev profile)')
    .option('--print-config', 'print the effective config as YAML and exit')
    .option('--listen <host:port>', 'HBONE listener (default 0.0.0.0:15008; embedded 127.0.0.1:15008)', address())
    .option('--cert <file>', 'server certificate chain (PEM)', nonEmpty)
    .option('--key <file>', 'server private key (PEM)', nonEmpty)
    .option('--trust-bundle <file>', 'trust anchors for client certificates (repeatable)', collect(nonEmpty))
    .option('--trust-domain <td>', 'accepted SPIFFE trust domain (repeatable)', collect((s) => {
      if (!/^[a-z0-9._-]+$/.test(s)) throw new InvalidArgumentError(`"${s}" is not a SPIFFE trust domain`);
      return s;
    }))
    .option('--policies <path>', 'policy file or directory (repeatable)', collect(nonEmpty))
    .option('--no-watch', 'do not reload policies when their files change')
    .addOption(new Option('--default-action <action>', 'verdict when no ALLOW policy applies').choices(['ALLOW', 'DENY']))
    .addOption(new Option('--deny-status <status>', 'status answered on a policy deny').choices(['401', '403']).argParser((s) => Number(s) as 401 | 403))
    .option('--allow-destinations <CIDR[:PORT[+PORT]],...>', 'networks the gateway may dial (repeatable; replaces the config list)',
      (s: string, prev: DestinationAllow[] | undefined) => {
        const parsed = parseAllowDestinations(s);
        if (!parsed.ok) throw new InvalidArgumentError(parsed.message);
        return [...(prev ?? []), ...parsed.value];
      })
    .option('--route <host:port=ip:port>', 'route a host:port authority to an address (repeatable)',
      (s: string, prev: Record<string, string> | undefined) => {
        const eq = s.indexOf('=');
        const key = parseRouteKey(s.slice(0, eq));
        const target = parseRouteTarget(s.slice(eq + 1));
        if (eq < 0 || !key.ok || !target.ok) throw new InvalidArgumentError(`"${s}" is not host:port=ip:port`);
        return { ...(prev ?? {}), [`${key.value.host}:${key.value.port}`]: s.slice(eq + 1) };
      })
    .option('--audit-log <file|->', 'audit log destination, - for stdout', nonEmpty)
    .addOption(new Option('--log-level <level>', 'operational log level').choices(LOG_LEVELS))
    .option('--workers <n|auto>', 'processes sharing the listener', (s: string) => {
      if (s === 'auto') return 'auto' as const;
      return integer(...bounds('workers'))(s);
    })
    .option('--ready-address <host:port>', '/healthz/ready listener (default :15021)', address())
    .option('--metrics-address <host:port>', '/metrics listener (default :15020)', address())
    .option('--admin-address <host:port>', 'admin listener, loopback only (default 127.0.0.1:15000)', address(true))
    .option('--connect-timeout-ms <ms>', 'upstream connect timeout', integer(...bounds('timeouts.connectTimeoutMs')))
    .option('--handshake-timeout-ms <ms>', 'TLS handshake + HTTP/2 preface timeout', integer(...bounds('timeouts.handshakeTimeoutMs')))
    .option('--drain-timeout-ms <ms>', 'drain deadline (default from TERMINATION_GRACE_PERIOD_SECONDS, else 5000)', integer(...bounds('timeouts.drainTimeoutMs')))
    .option('--idle-timeout-ms <ms>', 'close idle tunnels after this long (0 = off)', integer(...bounds('timeouts.idleTimeoutMs')))
    .option('--max-connections <n>', 'concurrent TLS connections (0 = unlimited)', integer(...bounds('limits.maxConnections')))
    .option('--max-streams-per-connection <n>', 'HTTP/2 max concurrent streams', integer(...bounds('limits.maxStreamsPerConnection')))
    .option('--max-pending-dials-per-connection <n>', 'upstream dials in flight per connection; further CONNECTs wait for a slot (default 100, at most --max-streams-per-connection)', integer(...bounds('limits.maxPendingDialsPerConnection')))
    .option('--proxy-protocol', 'send PROXY protocol v2 (with the SPIFFE ID) to upstreams')
    .option('--allow-tls12', 'accept TLS 1.2 clients')
    .option('--mesh <file>', 'discovery: a kind: Mesh file of services and workloads (hot-reloaded; docs/design.md §6)', nonEmpty)
    .option('--kubeconfig <file>', 'credentials for discovery.kubernetes (default: in-cluster, else KUBECONFIG, else ~/.kube/config)', nonEmpty);
}

/** Turns parsed flag values into a config layer; relative paths resolve against `cwd`. */
export function flagsToLayer(f: ServeFlagValues, cwd: string = process.cwd()): ConfigLayer {
  const abs = (p: string): string => path.resolve(cwd, p);
  const layer: ConfigLayer = {};
  if (f.listen !== undefined) layer.listen = f.listen;
  const tls: ConfigLayer['tls'] = {};
  if (f.cert !== undefined) tls.certFile = abs(f.cert);
  if (f.key !== undefined) tls.keyFile = abs(f.key);
  if (f.trustBundle !== undefined) tls.trustBundleFiles = f.trustBundle.map(abs);
  if (f.allowTls12) tls.allowTls12 = true;
  if (Object.keys(tls).length) layer.tls = tls;
  if (f.trustDomain !== undefined) layer.trustDomains = f.trustDomain;
  const policies: ConfigLayer['policies'] = {};
  if (f.policies !== undefined) policies.paths = f.policies.map(abs);
  if (f.watch === false) policies.watch = false;
  if (Object.keys(policies).length) layer.policies = policies;
  if (f.defaultAction !== undefined) layer.defaultAction = f.defaultAction;
  if (f.denyStatus !== undefined) layer.denyStatus = f.denyStatus;
  const destinations: ConfigLayer['destinations'] = {};
  if (f.allowDestinations !== undefined) destinations.allow = f.allowDestinations;
  if (f.route !== undefined) destinations.routes = f.route;
  if (Object.keys(destinations).length) layer.destinations = destinations;
  const timeouts: ConfigLayer['timeouts'] = {};
  if (f.connectTimeoutMs !== undefined) timeouts.connectTimeoutMs = f.connectTimeoutMs;
  if (f.handshakeTimeoutMs !== undefined) timeouts.handshakeTimeoutMs = f.handshakeTimeoutMs;
  if (f.drainTimeoutMs !== undefined) timeouts.drainTimeoutMs = f.drainTimeoutMs;
  if (f.idleTimeoutMs !== undefined) timeouts.idleTimeoutMs = f.idleTimeoutMs;
  if (Object.keys(timeouts).length) layer.timeouts = timeouts;
  const limits: ConfigLayer['limits'] = {};
  if (f.maxConnections !== undefined) limits.maxConnections = f.maxConnections;
  if (f.maxStreamsPerConnection !== undefined) limits.maxStreamsPerConnection = f.maxStreamsPerConnection;
  if (f.maxPendingDialsPerConnection !== undefined) limits.maxPendingDialsPerConnection = f.maxPendingDialsPerConnection;
  if (Object.keys(limits).length) layer.limits = limits;
  if (f.auditLog !== undefined) layer.audit = { destination: f.auditLog === '-' ? '-' : abs(f.auditLog) };
  if (f.logLevel !== undefined) layer.log = { level: f.logLevel };
  const admin: ConfigLayer['admin'] = {};
  if (f.readyAddress !== undefined) admin.readyAddress = f.readyAddress;
  if (f.metricsAddress !== undefined) admin.metricsAddress = f.metricsAddress;
  if (f.adminAddress !== undefined) admin.adminAddress = f.adminAddress;
  if (Object.keys(admin).length) layer.admin = admin;
  if (f.workers !== undefined) layer.workers = f.workers;
  if (f.proxyProtocol) layer.proxyProtocol = true;
  if (f.mesh !== undefined) layer.discovery = { meshFile: abs(f.mesh) };
  // Merged into the file's discovery.kubernetes (src/config/resolve.ts refuses it without one).
  if (f.kubeconfig !== undefined) layer.discovery = { ...layer.discovery, kubernetes: { kubeconfig: abs(f.kubeconfig) } as NonNullable<GatewayConfig['discovery']['kubernetes']> };
  return layer;
}
