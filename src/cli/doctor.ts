/**
 * `waygate doctor`: checks a deployment end to end with the operator's own credentials and says
 * in plain words what is wrong and how to fix it (docs/kubernetes.md). Each check is ok, warn,
 * fail or skipped (with the reason). Exit 0 when nothing failed, 1 when a check failed, 2 when it
 * cannot run (no credentials, API server unreachable or refusing the credentials).
 *
 * What it checks, and why istiod or ztunnel care:
 * - the Gateway exists, its class is waygate's (controllerName) and Accepted, it has the HBONE
 *   listener on 15008 (istiod reads allowedRoutes from it: waypoints.go makeAllowedRoutes);
 * - its status: addresses (none = istiod does not treat it as a waypoint at all), a Hostname in
 *   the Gateway's own namespace naming an existing Service (getGatewayAddress resolves it there),
 *   Accepted and Programmed True with observedGeneration current;
 * - each fronted namespace: labelled `istio.io/use-waypoint` and `istio.io/use-waypoint-namespace`,
 *   admitted by the listener's allowedRoutes, and locked down (an AuthorizationPolicy admitting only
 *   waygate's principal: examples/kubernetes/lockdown.yaml);
 * - the gateway pods carry `gateway.networking.k8s.io/gateway-name` (istiod takes the waypoint's
 *   service accounts from the pods with that label);
 * - the serving certificate (the Secret the Deployment mounts) names the SPIFFE ID of the pods'
 *   service account and chains to the mesh root (ConfigMap istio-ca-root-cert);
 * - a pod's readiness (TLS, policies and discovery's first sync), if its IP is reachable from here.
 *
 * This module builds the command and declares the report; the checks are src/cli/doctor-run.ts,
 * loaded when it runs (docs/architecture.md, "Adding a CLI verb").
 */
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import { addOutputOption } from './output.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface Check {
  /** Stable id: `gateway`, `gateway.status.addresses`, `namespace/shop.labels`, ... */
  id: string;
  status: CheckStatus;
  message: string;
  /** What to do about it (warn/fail). */
  fix?: string;
}

export interface DoctorReport {
  server: string;
  credentials: string;
  namespace: string;
  gateway: string;
  fronted: string[];
  checks: Check[];
  summary: Record<CheckStatus, number>;
}

export interface DoctorOptions {
  kubeconfig?: string | undefined;
  namespace: string;
  gateway: string;
  /** The fronted namespaces; empty: read from the Gateway's allowedRoutes and the namespace labels. */
  fronted?: readonly string[];
  /** The Deployment whose pods serve the Gateway; default: the Gateway's name. */
  deployment?: string | undefined;
  trustDomain: string;
  clusterDomain: string;
  controllerName: string;
  /** How long to wait for a pod's readiness endpoint before saying it was not reachable. */
  readinessTimeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

export interface DoctorFlags {
  kubeconfig?: string;
  namespace: string;
  gateway: string;
  fronted?: string[];
  deployment?: string;
  trustDomain: string;
  clusterDomain: string;
  controllerName: string;
  readinessTimeoutMs: number;
  output: 'text' | 'json';
}

const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter((s) => s !== '');
const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer (milliseconds)');
  return n;
};

/** Runs every check (src/cli/doctor-run.ts). Throws DoctorCannotRun when the API server cannot be used at all. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  return (await import('./doctor-run.ts')).runDoctor(opts);
}

export function registerDoctor(program: Command): void {
  const cmd = program
    .command('doctor')
    .description('check a Kubernetes deployment end to end (Gateway status, namespace labels, allowedRoutes, pod label, certificate, lockdown, readiness) with your kubeconfig; exit 0 nothing failed, 1 a check failed, 2 cannot run')
    .option('--kubeconfig <file>', 'kubeconfig (default: KUBECONFIG, in-cluster, ~/.kube/config)')
    .option('--namespace <ns>', 'the namespace of the Gateway and the waygate pods', 'waygate')
    .option('--gateway <name>', 'the Gateway', 'waygate')
    .option('--fronted <ns,...>', 'the fronted namespaces (default: read from the listener\'s allowedRoutes and the use-waypoint labels)', list)
    .option('--deployment <name>', 'the Deployment of the waygate pods (default: the Gateway\'s name)')
    .option('--trust-domain <td>', 'the mesh trust domain (SPIFFE IDs and principals)', DEFAULT_TRUST_DOMAIN)
    .option('--cluster-domain <domain>', 'the cluster DNS domain (Service hostnames)', 'cluster.local')
    .option('--controller-name <name>', 'waygate\'s GatewayClass controller (registration.controllerName)', 'waygate.dev/gateway-controller')
    .option('--readiness-timeout-ms <ms>', 'how long to wait for a pod\'s readiness endpoint', positiveInt, 2000);
  addOutputOption(cmd, ['text', 'json'] as const);
  cmd.action(async (flags: DoctorFlags) => (await import('./doctor-run.ts')).doctorCommand(flags));
}
