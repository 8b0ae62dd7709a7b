/**
 * What `waygate doctor` does: every check of src/cli/doctor.ts's list, against the API server,
 * and the report (src/cli/doctor.ts registers the command and its flags).
 */
import type { X509Certificate } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { WaygateError } from '../errors.ts';
import { ISTIO_CA_DEFAULTS } from '../config/schema.ts';
import { chainsToAnchor, parsePemCertificates } from '../identity/trust-bundle.ts';
import { uriSansFromDer } from '../identity/peer-identity.ts';
import type { GatewayObject, GatewayClassObject } from '../kube/gateway-status.ts';
import { apiStatus, apiStatusMessage, kubeClient, loadKubeConfig } from '../kube/client.ts';
import type { Check, CheckStatus, DoctorFlags, DoctorOptions, DoctorReport } from './doctor.ts';
import { INBOUND_BINDING_ANNOTATION, sandwichCheck } from './doctor-sandwich.ts';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.ts';
import { stderr, stdout, styleFor, writeJson, type TextSink } from './output.ts';

/** The deployment could not be checked at all (exit 2). */
export class DoctorCannotRun extends WaygateError {
  constructor(message: string, cause?: unknown) {
    super('WG_KUBE', message, cause === undefined ? undefined : { cause });
  }
}

export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NS_LABEL = 'istio.io/use-waypoint-namespace';
const ISTIO_ROOT_CONFIGMAP = 'istio-ca-root-cert';

type Got<T> = { ok: true; value: T } | { ok: false; status: number | undefined; message: string };

/** The API server's words, else the transport's error code (ECONNREFUSED), else the message. */
function apiMessage(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string } } | null;
  return apiStatusMessage(err) ?? e?.cause?.code ?? e?.message ?? String(err);
}

async function got<T>(fn: () => Promise<T>): Promise<Got<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, status: apiStatus(err), message: apiMessage(err) };
  }
}

/** Why a read failed, in words (403: which permission the operator's credentials lack). */
function unreadable(what: string, g: { status: number | undefined; message: string }): string {
  if (g.status === 403) return `your credentials cannot read ${what} (403: ${g.message})`;
  return `cannot read ${what} (${g.status ? `HTTP ${g.status}: ` : ''}${g.message})`;
}

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Kubernetes label selector semantics (metav1.LabelSelectorAsSelector). */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    const ok = e.operator === 'In' ? inValues : e.operator === 'NotIn' ? !inValues : e.operator === 'Exists' ? has : e.operator === 'DoesNotExist' ? !has : false;
    if (!ok) return false;
  }
  return true;
}

interface AllowedRoutes { namespaces?: { from?: string; selector?: LabelSelector } }

/** Whether the HBONE listener's allowedRoutes admit namespace `ns` (istiod: AllowsAttachmentFromNamespace). */
function admits(routes: AllowedRoutes | undefined, gatewayNs: string, ns: string, labels: Record<string, string>): boolean {
  const from = routes?.namespaces?.from ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Selector') return selectorMatches(routes?.namespaces?.selector, labels);
  return ns === gatewayNs;
}

interface AuthzPolicy {
  metadata: { name: string; namespace?: string };
  spec?: {
    action?: string;
    selector?: unknown;
    targetRef?: unknown;
    targetRefs?: unknown[];
    rules?: { from?: { source?: { principals?: string[]; notPrincipals?: string[]; [k: string]: unknown } }[]; to?: unknown; when?: unknown }[];
  };
}

/**
 * Whether `policies` lock namespace `ns` down to `principal`: a namespace-wide (no selector, no
 * targetRefs: the kind istiod sends to ztunnel) DENY whose only rule denies every source but
 * `principal` (examples/kubernetes/lockdown.yaml). Returns the check.
 */
function lockdownCheck(id: string, ns: string, principal: string, policies: AuthzPolicy[]): Check {
  const wide = policies.filter((p) => !p.spec?.selector && !p.spec?.targetRef && !(p.spec?.targetRefs?.length));
  for (const p of wide) {
    if ((p.spec?.action ?? 'ALLOW') !== 'DENY') continue;
    const rules = p.spec?.rules ?? [];
    if (rules.length !== 1) continue;
    const r = rules[0]!;
    if (r.to !== undefined || r.when !== undefined || r.from?.length !== 1) continue;
    const source = r.from[0]!.source ?? {};
    const keys = Object.keys(source);
    if (keys.length !== 1 || !source.notPrincipals) continue;
    if (!source.notPrincipals.includes(principal)) continue;
    const others = source.notPrincipals.filter((x) => x !== principal);
    if (others.length > 0) {
      return { id, status: 'warn', message: `AuthorizationPolicy ${ns}/${p.metadata.name} denies every source but ${principal} and also ${others.join(', ')}: those reach the pods of ${ns} around waygate`,
        fix: `keep only ${principal} in notPrincipals unless those clients must bypass waygate (examples/kubernetes/lockdown.yaml)` };
    }
    return { id, status: 'ok', message: `AuthorizationPolicy ${ns}/${p.metadata.name} denies every source but waygate (${principal})` };
  }
  return { id, status: 'fail', message: `no lockdown in ${ns}: nothing stops a client from reaching its pods directly, around waygate's policies (and when the Gateway is gone, ztunnel sends traffic straight to them)`,
    fix: `apply examples/kubernetes/lockdown.yaml with namespace ${ns}: a DENY with notPrincipals [${principal}], no selector` };
}

/** Runs every check. Throws DoctorCannotRun when the API server cannot be used at all. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  let loaded;
  try {
    loaded = await loadKubeConfig({ kubeconfig: opts.kubeconfig, ...(opts.env ? { env: opts.env } : {}) });
  } catch (err) {
    throw new DoctorCannotRun((err as Error).message, err);
  }
  const k8s = await kubeClient();
  // Imported here: the module brings prom-client, which other verbs need not load.
  const { GATEWAY_API_GROUP, HBONE_PORT, HBONE_PROTOCOL, serviceHostname } = await import('../kube/gateway-status.ts');
  const core = loaded.config.makeApiClient(k8s.CoreV1Api);
  const apps = loaded.config.makeApiClient(k8s.AppsV1Api);
  const custom = loaded.config.makeApiClient(k8s.CustomObjectsApi);
  const ns = opts.namespace;
  const checks: Check[] = [];
  const add = (c: Check): void => void checks.push(c);
  const gwRef = `Gateway ${ns}/${opts.gateway}`;

  // 1. The Gateway. Its read also tells whether the API server can be used at all.
  const gw = await got(() => custom.getNamespacedCustomObject({ group: GATEWAY_API_GROUP, version: 'v1', namespace: ns, plural: 'gateways', name: opts.gateway }) as Promise<GatewayObject>);
  if (!gw.ok && (gw.status === undefined || gw.status === 401)) {
    const why = gw.status === 401 ? 'refused the credentials (401 Unauthorized)' : `cannot be reached (${gw.message})`;
    throw new DoctorCannotRun(`the API server ${loaded.server} (${loaded.from}) ${why}`);
  }
  const gateway = gw.ok ? gw.value : undefined;
  if (!gw.ok) {
    add(gw.status === 404
      ? { id: 'gateway', status: 'fail', message: `${gwRef} not found: istiod has no waypoint for the fronted namespaces`, fix: 'kubectl apply -f examples/kubernetes/gateway-api.yaml (or pass --namespace/--gateway)' }
      : { id: 'gateway', status: 'fail', message: unreadable(gwRef, gw) });
  } else {
    add({ id: 'gateway', status: 'ok', message: `${gwRef} exists (class ${gateway!.spec.gatewayClassName})` });
  }

  // 2. Its class.
  let gatewayClassLabels: Record<string, string> | undefined;
  let gatewayClassBinding: string | undefined;
  if (gateway) {
    const className = gateway.spec.gatewayClassName;
    const gc = await got(() => custom.getClusterCustomObject({ group: GATEWAY_API_GROUP, version: 'v1', plural: 'gatewayclasses', name: className }) as Promise<GatewayClassObject>);
    if (gc.ok) gatewayClassLabels = gc.value.metadata.labels ?? {};
    if (gc.ok) gatewayClassBinding = (gc.value.metadata as { annotations?: Record<string, string> }).annotations?.[INBOUND_BINDING_ANNOTATION];
    if (!gc.ok) {
      add(gc.status === 404
        ? { id: 'gateway.class', status: 'fail', message: `GatewayClass ${className} not found: no controller writes the Gateway's status`, fix: 'kubectl apply -f examples/kubernetes/gateway-api.yaml' }
        : { id: 'gateway.class', status: 'skipped', message: unreadable(`GatewayClass ${className}`, gc) });
    } else if (gc.value.spec.controllerName !== opts.controllerName) {
      add({ id: 'gateway.class', status: 'fail', message: `GatewayClass ${className} names controller ${gc.value.spec.controllerName}, not waygate's ${opts.controllerName}: waygate does not write this Gateway's status`,
        fix: `use gatewayClassName of a class with controllerName ${opts.controllerName} (registration.controllerName)` });
    } else {
      const accepted = gc.value.status?.conditions?.find((c) => c.type === 'Accepted');
      add(accepted?.status === 'True'
        ? { id: 'gateway.class', status: 'ok', message: `GatewayClass ${className} is waygate's (${opts.controllerName}) and Accepted` }
        : { id: 'gateway.class', status: 'warn', message: `GatewayClass ${className} is waygate's but not Accepted yet: no waygate with registration.enabled has seen it`,
            fix: 'enable registration in gateway.yaml and check the pods\' log for "registration:" lines' });
    }
  } else {
    add({ id: 'gateway.class', status: 'skipped', message: 'no Gateway to read the class of' });
  }

  // Gateways of the class elsewhere: a waygate deployment serves only its own namespace's (the
  // Hostname address names a Service there). Reported only when there are some (and listable).
  if (gateway) {
    const all = await got(() => custom.listCustomObjectForAllNamespaces({ group: GATEWAY_API_GROUP, version: 'v1', plural: 'gateways' }) as Promise<{ items: GatewayObject[] }>);
    const elsewhere = all.ok ? all.value.items.filter((g) => g.spec?.gatewayClassName === gateway.spec.gatewayClassName && g.metadata.namespace !== ns) : [];
    if (elsewhere.length > 0) {
      add({ id: 'gateway.others', status: 'warn', message: `Gateway(s) ${elsewhere.map((g) => `${g.metadata.namespace}/${g.metadata.name}`).join(', ')} of class ${gateway.spec.gatewayClassName} are not in ${ns}: the waygate in ${ns} does not serve them (no controller writes their status unless a waygate runs in their namespace)`,
        fix: `delete them, or run waygate in their namespace; a fronted namespace points at ${ns}/${opts.gateway} with ${USE_WAYPOINT_NS_LABEL}` });
    }
  }

  // 3. The HBONE listener.
  const hbone = gateway?.spec.listeners?.find((l) => l.port === HBONE_PORT && l.protocol === HBONE_PROTOCOL);
  if (!gateway) add({ id: 'gateway.listener', status: 'skipped', message: 'no Gateway' });
  else if (!hbone) {
    add({ id: 'gateway.listener', status: 'fail', message: `${gwRef} has no listener on port ${HBONE_PORT} with protocol ${HBONE_PROTOCOL}: istiod then admits only the Gateway's own namespace`,
      fix: `add listeners: [{name: mesh, port: ${HBONE_PORT}, protocol: ${HBONE_PROTOCOL}, allowedRoutes: ...}] (examples/kubernetes/gateway-api.yaml)` });
  } else add({ id: 'gateway.listener', status: 'ok', message: `listener ${hbone.name}: port ${HBONE_PORT}, protocol ${HBONE_PROTOCOL}` });

  // Which traffic istiod sends through the waypoint (waypoints.go: the Gateway's label, else its
  // class's, else `service`).
  if (gateway) {
    const gcLabels = gatewayClassLabels ?? {};
    const forValue = gateway.metadata.labels?.['istio.io/waypoint-for'] ?? gcLabels['istio.io/waypoint-for'];
    if (forValue === 'all') add({ id: 'gateway.waypointFor', status: 'ok', message: 'istio.io/waypoint-for: all: traffic to the fronted Services and to their pods\' own addresses goes through waygate' });
    else add({ id: 'gateway.waypointFor', status: 'warn', message: `istio.io/waypoint-for is ${forValue ?? 'not set (istiod: service)'}: traffic addressed to pod IPs (headless Services, StatefulSet pods) goes straight to the pods, around waygate's policies${forValue === 'workload' || forValue === 'none' ? ', and Service traffic too' : ''}`,
      fix: `kubectl -n ${ns} label gateway ${opts.gateway} istio.io/waypoint-for=all` });
  }

  // 4. Status addresses: what makes it a waypoint, and where istiod looks the hostname up.
  if (!gateway) add({ id: 'gateway.status.addresses', status: 'skipped', message: 'no Gateway' });
  else {
    const addresses = gateway.status?.addresses ?? [];
    const hostname = addresses.find((a) => a.type === 'Hostname');
    const suffix = `.svc.${opts.clusterDomain}`;
    if (addresses.length === 0) {
      add({ id: 'gateway.status.addresses', status: 'fail', message: `${gwRef} has no status addresses: istiod does not treat it as a waypoint, so ztunnel sends the fronted namespaces' traffic straight to the pods`,
        fix: 'set registration.enabled: true in gateway.yaml (waygate writes the status itself) and check the pods\' log for "registration:" error lines' });
    } else if (hostname) {
      const m = hostname.value.endsWith(suffix) ? hostname.value.slice(0, -suffix.length).split('.') : [];
      if (m.length !== 2) {
        add({ id: 'gateway.status.addresses', status: 'fail', message: `status address ${hostname.value} is not a Service hostname <svc>.<ns>${suffix}` });
      } else if (m[1] !== ns) {
        add({ id: 'gateway.status.addresses', status: 'fail', message: `status address ${hostname.value} names namespace ${m[1]}, but istiod looks a Gateway's hostname up in the Gateway's own namespace (${ns}): the waypoint is unknown and ztunnel drops the traffic`,
          fix: `the Gateway and the Service it names live in the same namespace: ${serviceHostname('waygate', ns, opts.clusterDomain)}` });
      } else {
        const svc = await got(() => core.readNamespacedService({ name: m[0]!, namespace: ns }));
        if (svc.ok) add({ id: 'gateway.status.addresses', status: 'ok', message: `status address ${hostname.value} (Service ${ns}/${m[0]}${svc.value.spec?.clusterIP ? `, ClusterIP ${svc.value.spec.clusterIP}` : ''})` });
        else if (svc.status === 404) add({ id: 'gateway.status.addresses', status: 'fail', message: `status address ${hostname.value} names Service ${ns}/${m[0]}, which does not exist`, fix: 'kubectl apply -f examples/kubernetes/service.yaml' });
        else add({ id: 'gateway.status.addresses', status: 'warn', message: `status address ${hostname.value}; ${unreadable(`Service ${ns}/${m[0]}`, svc)}` });
      }
    } else {
      add({ id: 'gateway.status.addresses', status: 'warn', message: `status addresses ${addresses.map((a) => a.value).join(', ')} are IPs only: istiod prefers a Hostname (an IP can be reallocated)`,
        fix: 'let waygate write the status (registration.enabled: true): it writes the Service\'s hostname too' });
    }
  }

  // 5. Conditions.
  if (!gateway) add({ id: 'gateway.status.conditions', status: 'skipped', message: 'no Gateway' });
  else {
    const generation = gateway.metadata.generation ?? 0;
    const problems: string[] = [];
    let stale = false;
    for (const type of ['Accepted', 'Programmed']) {
      const c = gateway.status?.conditions?.find((x) => x.type === type);
      if (!c) problems.push(`${type} is not set`);
      else if (c.status !== 'True') problems.push(`${type} is ${c.status} (${c.reason}: ${c.message})`);
      else if (c.observedGeneration !== undefined && c.observedGeneration < generation) { stale = true; problems.push(`${type} was observed at generation ${c.observedGeneration}, the Gateway is at ${generation}`); }
    }
    if (problems.length === 0) add({ id: 'gateway.status.conditions', status: 'ok', message: `Accepted and Programmed True at generation ${generation}` });
    else add({ id: 'gateway.status.conditions', status: stale && problems.length === 1 ? 'warn' : 'fail', message: problems.join('; '),
      fix: 'waygate writes these (registration.enabled: true); its pods\' log says why not ("registration:" lines, metric waygate_registration_status)' });
  }

  // 6. The pods and the Deployment: label, service account, certificate.
  const deployName = opts.deployment ?? opts.gateway;
  const dep = await got(() => apps.readNamespacedDeployment({ name: deployName, namespace: ns }));
  const template = dep.ok ? dep.value.spec?.template : undefined;
  const serviceAccount = template?.spec?.serviceAccountName || (dep.ok ? 'default' : undefined);
  const principal = `${opts.trustDomain}/ns/${ns}/sa/${serviceAccount ?? opts.gateway}`;
  if (!dep.ok) {
    add({ id: 'pods.label', status: dep.status === 404 ? 'fail' : 'skipped',
      message: dep.status === 404 ? `Deployment ${ns}/${deployName} not found` : unreadable(`Deployment ${ns}/${deployName}`, dep),
      ...(dep.status === 404 ? { fix: 'pass --deployment NAME, or kubectl apply -k examples/kubernetes/' } : {}) });
  } else {
    const selector = dep.value.spec?.selector?.matchLabels ?? {};
    const labelSelector = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',');
    const pods = await got(() => core.listNamespacedPod({ namespace: ns, labelSelector }));
    const templateLabel = template?.metadata?.labels?.[GATEWAY_NAME_LABEL];
    if (!pods.ok) {
      add({ id: 'pods.label', status: 'skipped', message: unreadable(`the pods of Deployment ${ns}/${deployName}`, pods) });
    } else {
      const items = pods.value.items;
      const missing = items.filter((p) => p.metadata?.labels?.[GATEWAY_NAME_LABEL] !== opts.gateway).map((p) => p.metadata?.name ?? '?');
      const fix = `add ${GATEWAY_NAME_LABEL}: ${opts.gateway} to the Deployment's pod template labels (examples/kubernetes/deployment.yaml)`;
      if (items.length === 0) add({ id: 'pods.label', status: templateLabel === opts.gateway ? 'warn' : 'fail', message: `no pods of Deployment ${ns}/${deployName} are running${templateLabel === opts.gateway ? '' : `, and its pod template lacks ${GATEWAY_NAME_LABEL}: ${opts.gateway}`}`, ...(templateLabel === opts.gateway ? {} : { fix }) });
      else if (missing.length > 0) add({ id: 'pods.label', status: 'fail', message: `pod(s) ${missing.join(', ')} lack the label ${GATEWAY_NAME_LABEL}: ${opts.gateway}: istiod takes the waypoint's identities from the pods carrying it`, fix });
      else add({ id: 'pods.label', status: 'ok', message: `${items.length} pod(s) labelled ${GATEWAY_NAME_LABEL}: ${opts.gateway}, service account ${serviceAccount}` });
      await readinessCheck(items, opts, add);
    }
  }
  if (!dep.ok) add({ id: 'pods.ready', status: 'skipped', message: 'no Deployment to find the pods of' });

  // The gateway's own config (the ConfigMap the Deployment mounts): what it discovers and whether it registers.
  const gwConfig = template ? await readGatewayConfig(core, ns, template) : undefined;
  const configNamespaces = gwConfig?.spec.discovery?.kubernetes?.namespaces;
  if (!template) add({ id: 'config', status: 'skipped', message: 'no Deployment to find the config of' });
  else if (!gwConfig) add({ id: 'config', status: 'skipped', message: `no GatewayConfig found in the ConfigMaps Deployment ${ns}/${deployName} mounts` });
  else if (gwConfig.spec.registration?.enabled !== true) {
    add({ id: 'config', status: 'warn', message: `${gwConfig.source}: registration.enabled is not true: nothing keeps the Gateway's status true, and a recreated Gateway silently drops waygate out of the path`,
      fix: 'set registration.enabled: true (examples/kubernetes/gateway.yaml) and grant its RBAC (examples/kubernetes/rbac.yaml)' });
  } else {
    add({ id: 'config', status: 'ok', message: `${gwConfig.source}: registration enabled${configNamespaces ? `, discovery.kubernetes.namespaces ${configNamespaces.join(', ')}` : ''}${gwConfig.spec.sandwich?.listen ? `, sandwich.listen ${gwConfig.spec.sandwich.listen}` : ''}` });
  }

  // Sandwich mode (src/cli/doctor-sandwich.ts): the binding, sandwich.listen, the bound listener, the namespace label.
  if (gateway) {
    const gwBinding = (gateway.metadata as { annotations?: Record<string, string> }).annotations?.[INBOUND_BINDING_ANNOTATION];
    const own = await got(() => core.readNamespace({ name: ns }));
    const sandwich = sandwichCheck({
      gwRef, namespace: ns,
      binding: gwBinding !== undefined ? { value: gwBinding, on: 'Gateway' } : gatewayClassBinding !== undefined ? { value: gatewayClassBinding, on: 'GatewayClass' } : undefined,
      listeners: gateway.spec.listeners ?? [],
      sandwichListen: gwConfig ? gwConfig.spec.sandwich?.listen ?? null : undefined,
      configSource: gwConfig?.source,
      namespaceMode: own.ok ? own.value.metadata?.labels?.['istio.io/dataplane-mode'] ?? null : undefined,
      podMode: template?.metadata?.labels?.['istio.io/dataplane-mode'],
    });
    if (sandwich) add(sandwich);
  }

  const certCx: CertContext = { core, ns, template, serviceAccount, trustDomain: opts.trustDomain, deployName };
  const istioCa = gwConfig?.spec.tls?.istioCa;
  if (istioCa && typeof istioCa === 'object') await meshCaChecks(certCx, istioCa, gwConfig!.spec.tls?.trustBundleFiles ?? [], add);
  else await certificateChecks(certCx, add);

  // 7. The fronted namespaces.
  const fronted = new Set(opts.fronted ?? []);
  if (fronted.size === 0) {
    const expr = (hbone?.allowedRoutes as AllowedRoutes | undefined)?.namespaces?.selector?.matchExpressions?.find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'In');
    for (const v of expr?.values ?? []) fronted.add(v);
    for (const v of configNamespaces ?? []) fronted.add(v);
    const labelled = await got(() => core.listNamespace({ labelSelector: `${USE_WAYPOINT_LABEL}=${opts.gateway}` }));
    if (labelled.ok) {
      for (const n of labelled.value.items) {
        const name = n.metadata?.name;
        const wns = n.metadata?.labels?.[USE_WAYPOINT_NS_LABEL] ?? name;
        if (name && wns === ns) fronted.add(name);
      }
    }
  }
  if (fronted.size === 0) {
    add({ id: 'namespaces', status: 'warn', message: 'no fronted namespace found (none named by the listener\'s allowedRoutes, the config\'s discovery.kubernetes.namespaces or a use-waypoint label)', fix: 'pass --fronted shop,... to check them' });
  }
  for (const name of [...fronted].sort()) {
    const n = await got(() => core.readNamespace({ name }));
    if (!n.ok) {
      const msg = n.status === 404 ? `namespace ${name} does not exist` : unreadable(`namespace ${name}`, n);
      add({ id: `namespace/${name}.labels`, status: n.status === 404 ? 'fail' : 'skipped', message: msg });
      add({ id: `namespace/${name}.allowedRoutes`, status: 'skipped', message: msg });
    } else {
      const labels: Record<string, string> = { 'kubernetes.io/metadata.name': name, ...(n.value.metadata?.labels ?? {}) };
      const use = labels[USE_WAYPOINT_LABEL];
      const useNs = labels[USE_WAYPOINT_NS_LABEL];
      const wrong: string[] = [];
      if (use !== opts.gateway) wrong.push(use === undefined ? `${USE_WAYPOINT_LABEL} is not set` : `${USE_WAYPOINT_LABEL} is ${use}, not ${opts.gateway}`);
      if (useNs !== ns && !(useNs === undefined && name === ns)) wrong.push(useNs === undefined ? `${USE_WAYPOINT_NS_LABEL} is not set (istiod then looks for the Gateway in ${name})` : `${USE_WAYPOINT_NS_LABEL} is ${useNs}, not ${ns}`);
      if (wrong.length > 0) {
        add({ id: `namespace/${name}.labels`, status: 'fail', message: `namespace ${name}: ${wrong.join('; ')}: its traffic does not go through waygate`,
          fix: `kubectl label namespace ${name} ${USE_WAYPOINT_LABEL}=${opts.gateway} ${USE_WAYPOINT_NS_LABEL}=${ns} --overwrite` });
      } else if (labels['istio.io/dataplane-mode'] !== 'ambient') {
        add({ id: `namespace/${name}.labels`, status: 'warn', message: `namespace ${name} uses waypoint ${ns}/${opts.gateway} but is not labelled istio.io/dataplane-mode=ambient: its pods may not be in the ambient mesh`,
          fix: `kubectl label namespace ${name} istio.io/dataplane-mode=ambient` });
      } else {
        add({ id: `namespace/${name}.labels`, status: 'ok', message: `namespace ${name} uses waypoint ${ns}/${opts.gateway}` });
      }
      if (!hbone) add({ id: `namespace/${name}.allowedRoutes`, status: 'skipped', message: 'no HBONE listener' });
      else if (admits(hbone.allowedRoutes as AllowedRoutes | undefined, ns, name, labels)) add({ id: `namespace/${name}.allowedRoutes`, status: 'ok', message: `listener ${hbone.name} admits namespace ${name}` });
      else add({ id: `namespace/${name}.allowedRoutes`, status: 'fail', message: `listener ${hbone.name}'s allowedRoutes do not admit namespace ${name}: istiod does not use this waypoint for it`,
        fix: `add ${name} to the listener's allowedRoutes.namespaces selector (kubernetes.io/metadata.name In [...]: examples/kubernetes/gateway-api.yaml)` });
    }
    if (configNamespaces) {
      add(configNamespaces.includes(name)
        ? { id: `namespace/${name}.discovery`, status: 'ok', message: `waygate discovers the Services and Pods of ${name}` }
        : { id: `namespace/${name}.discovery`, status: 'fail', message: `${gwConfig!.source} does not list ${name} in discovery.kubernetes.namespaces: waygate refuses tunnels to its services (503, unknown destination)`,
            fix: `add ${name} to discovery.kubernetes.namespaces and a Role/RoleBinding for it (examples/kubernetes/rbac.yaml)` });
    }
    const aps = await got(() => custom.listNamespacedCustomObject({ group: 'security.istio.io', version: 'v1', namespace: name, plural: 'authorizationpolicies' }) as Promise<{ items: AuthzPolicy[] }>);
    if (!aps.ok) add({ id: `namespace/${name}.lockdown`, status: 'skipped', message: unreadable(`AuthorizationPolicies in ${name}`, aps) });
    else add(lockdownCheck(`namespace/${name}.lockdown`, name, principal, aps.value.items));
  }

  const summary: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skipped: 0 };
  for (const c of checks) summary[c.status]++;
  return { server: loaded.server, credentials: loaded.from, namespace: ns, gateway: opts.gateway, fronted: [...fronted].sort(), checks, summary };
}

interface GatewayConfigView {
  /** `ConfigMap ns/name key`. */
  source: string;
  spec: {
    discovery?: { kubernetes?: { namespaces?: string[] } | null };
    registration?: { enabled?: boolean };
    sandwich?: { listen?: string | null } | null;
    tls?: { trustBundleFiles?: string[]; istioCa?: { tokenFile?: string; identity?: string | null } | null };
  };
}

/** The first `kind: GatewayConfig` document in the ConfigMaps the pod template mounts. */
async function readGatewayConfig(core: import('@kubernetes/client-node').CoreV1Api, ns: string, template: import('@kubernetes/client-node').V1PodTemplateSpec): Promise<GatewayConfigView | undefined> {
  for (const name of (template.spec?.volumes ?? []).map((v) => v.configMap?.name).filter((n): n is string => !!n)) {
    const cm = await got(() => core.readNamespacedConfigMap({ name, namespace: ns }));
    if (!cm.ok) continue;
    for (const [key, text] of Object.entries(cm.value.data ?? {})) {
      if (!/\.ya?ml$/.test(key)) continue;
      let doc: unknown;
      try { doc = parseYaml(text); } catch { continue; }
      const d = doc as { kind?: unknown; spec?: GatewayConfigView['spec'] } | null;
      if (d?.kind === 'GatewayConfig' && d.spec && typeof d.spec === 'object') return { source: `ConfigMap ${ns}/${name} ${key}`, spec: d.spec };
    }
  }
  return undefined;
}

type Pod = import('@kubernetes/client-node').V1Pod;

/** A pod's readiness endpoint, if its IP can be reached from here (it usually cannot from outside the cluster). */
async function readinessCheck(pods: Pod[], opts: DoctorOptions, add: (c: Check) => void): Promise<void> {
  const pod = pods.find((p) => p.status?.podIP && p.status.phase === 'Running') ?? pods.find((p) => p.status?.podIP);
  if (!pod) { add({ id: 'pods.ready', status: 'skipped', message: 'no pod with an IP to ask' }); return; }
  const ports = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
  const port = ports.find((p) => p.name === 'health')?.containerPort ?? 15021;
  const host = pod.status!.podIP!.includes(':') ? `[${pod.status!.podIP}]` : pod.status!.podIP!;
  const url = `http://${host}:${port}/healthz/ready`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(opts.readinessTimeoutMs) });
  } catch (err) {
    add({ id: 'pods.ready', status: 'skipped', message: `not checked: ${url} (pod ${pod.metadata?.name}) is not reachable from here (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name}); run doctor inside the cluster, or kubectl port-forward and curl /healthz/ready` });
    return;
  }
  const body = await res.text();
  let reasons: string[] = [];
  try { reasons = (JSON.parse(body) as { reasons?: string[] }).reasons ?? []; } catch { /* not JSON: the status code says it */ }
  if (res.status === 200) add({ id: 'pods.ready', status: 'ok', message: `pod ${pod.metadata?.name} is ready: TLS material and policies loaded, discovery's first sync done` });
  else add({ id: 'pods.ready', status: 'fail', message: `pod ${pod.metadata?.name} is not ready (${res.status}${reasons.length ? `: ${reasons.join(', ')}` : ''}): discovery's first sync, TLS material or policies are not in place`,
    fix: `kubectl logs -n ${opts.namespace} ${pod.metadata?.name} says why` });
}

interface CertContext {
  core: import('@kubernetes/client-node').CoreV1Api;
  ns: string;
  template: import('@kubernetes/client-node').V1PodTemplateSpec | undefined;
  serviceAccount: string | undefined;
  trustDomain: string;
  deployName: string;
}

/**
 * The certificates under `key` of the ConfigMap istiod publishes the mesh root in ([] when none
 * parse); undefined, with the certificate.root check added, when the ConfigMap cannot be read.
 */
async function meshRootAnchors(cx: CertContext, key: string, add: (c: Check) => void): Promise<X509Certificate[] | undefined> {
  const cm = await got(() => cx.core.readNamespacedConfigMap({ name: ISTIO_ROOT_CONFIGMAP, namespace: cx.ns }));
  if (!cm.ok) {
    add(cm.status === 404
      ? { id: 'certificate.root', status: 'fail', message: `ConfigMap ${cx.ns}/${ISTIO_ROOT_CONFIGMAP} not found: istiod publishes the mesh root in every namespace; is Istio installed?` }
      : { id: 'certificate.root', status: 'skipped', message: unreadable(`ConfigMap ${cx.ns}/${ISTIO_ROOT_CONFIGMAP}`, cm) });
    return undefined;
  }
  const pem = cm.value.data?.[key];
  try { return pem ? parsePemCertificates(pem, `ConfigMap ${cx.ns}/${ISTIO_ROOT_CONFIGMAP}`) : []; } catch { return []; }
}

/** The serving certificate: the Secret the Deployment mounts with a tls.crt. */
async function certificateChecks(cx: CertContext, add: (c: Check) => void): Promise<void> {
  if (!cx.template) {
    add({ id: 'certificate.identity', status: 'skipped', message: `no Deployment ${cx.ns}/${cx.deployName} to find the mounted certificate of` });
    add({ id: 'certificate.root', status: 'skipped', message: 'no certificate' });
    return;
  }
  const secretNames = (cx.template.spec?.volumes ?? []).map((v) => v.secret?.secretName).filter((s): s is string => !!s);
  let chain: X509Certificate[] | undefined;
  let secretName = '';
  const problems: string[] = [];
  for (const name of secretNames) {
    const s = await got(() => cx.core.readNamespacedSecret({ name, namespace: cx.ns }));
    if (!s.ok) { problems.push(unreadable(`Secret ${cx.ns}/${name}`, s)); continue; }
    const crt = s.value.data?.['tls.crt'];
    if (!crt) continue;
    try {
      chain = parsePemCertificates(Buffer.from(crt, 'base64').toString('utf8'), `Secret ${cx.ns}/${name} tls.crt`);
      secretName = name;
      break;
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (!chain) {
    const msg = secretNames.length === 0 ? `Deployment ${cx.ns}/${cx.deployName} mounts no Secret` : `no Secret mounted by Deployment ${cx.ns}/${cx.deployName} holds a tls.crt${problems.length ? ` (${problems.join('; ')})` : ''}`;
    add({ id: 'certificate.identity', status: problems.some((p) => p.includes('cannot read')) ? 'skipped' : 'fail', message: msg });
    add({ id: 'certificate.root', status: 'skipped', message: 'no certificate' });
    return;
  }
  const leaf = chain[0]!;
  const want = `spiffe://${cx.trustDomain}/ns/${cx.ns}/sa/${cx.serviceAccount}`;
  const uris = uriSansFromDer(leaf.raw);
  const notAfter = new Date(leaf.validTo);
  const where = `Secret ${cx.ns}/${secretName}`;
  if (!uris.includes(want)) {
    add({ id: 'certificate.identity', status: 'fail', message: `${where} names ${uris.join(', ') || 'no URI SAN'}, but the pods run as ServiceAccount ${cx.serviceAccount}: ztunnels expect the waypoint to present ${want}`,
      fix: `re-issue the certificate with URI SAN ${want} (examples/kubernetes-cert-manager/certificate.yaml)` });
  } else if (notAfter.getTime() < Date.now()) {
    add({ id: 'certificate.identity', status: 'fail', message: `${where} (${want}) expired at ${notAfter.toISOString()}`, fix: 'renew it (cert-manager: kubectl describe certificate)' });
  } else {
    add({ id: 'certificate.identity', status: 'ok', message: `${where} names ${want}, valid until ${notAfter.toISOString()}` });
  }
  const anchors = await meshRootAnchors(cx, 'root-cert.pem', add);
  if (anchors === undefined) return;
  if (anchors.length === 0) add({ id: 'certificate.root', status: 'fail', message: `ConfigMap ${cx.ns}/${ISTIO_ROOT_CONFIGMAP} holds no root-cert.pem certificate` });
  else if (chainsToAnchor(chain, anchors)) add({ id: 'certificate.root', status: 'ok', message: `${where} chains to the mesh root (${ISTIO_ROOT_CONFIGMAP})` });
  else add({ id: 'certificate.root', status: 'fail', message: `${where} does not chain to the mesh root in ${ISTIO_ROOT_CONFIGMAP}: ztunnels refuse waygate's TLS`,
    fix: 'issue it from the mesh CA (or put its intermediate in tls.crt after the leaf)' });
}

/** The file a container path comes from: the volume mounted at the longest prefix of `file`, and the path inside it. */
function volumeOf(template: import('@kubernetes/client-node').V1PodTemplateSpec, file: string): { volume: import('@kubernetes/client-node').V1Volume; inner: string } | undefined {
  const mounts = (template.spec?.containers ?? []).flatMap((c) => c.volumeMounts ?? []);
  const m = mounts.filter((vm) => file.startsWith(vm.mountPath.replace(/\/?$/, '/'))).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const volume = m && (template.spec?.volumes ?? []).find((v) => v.name === m.name);
  return volume ? { volume, inner: file.slice(m.mountPath.replace(/\/?$/, '/').length) } : undefined;
}

/**
 * With `tls.istioCa` the certificate is asked of istiod at start (src/gateway/tls-source.ts), so
 * there is no Secret to read: check what the request needs instead. certificate.identity: a
 * projected service-account token of audience `istio-ca` at `tokenFile` (istiod authenticates the
 * CSR with it and issues that service account's identity), and a configured identity that agrees.
 * certificate.root: the mesh root mounted where `trustBundleFiles` reads it (it verifies istiod
 * and every certificate issued), present in the namespace.
 */
async function meshCaChecks(cx: CertContext, ca: { tokenFile?: string; identity?: string | null }, trustBundleFiles: string[], add: (c: Check) => void): Promise<void> {
  const want = `spiffe://${cx.trustDomain}/ns/${cx.ns}/sa/${cx.serviceAccount}`;
  const tokenFile = ca.tokenFile ?? ISTIO_CA_DEFAULTS.tokenFile;
  if (!cx.template) {
    add({ id: 'certificate.identity', status: 'skipped', message: `no Deployment ${cx.ns}/${cx.deployName} to find the token volume of` });
    add({ id: 'certificate.root', status: 'skipped', message: 'no Deployment' });
    return;
  }
  const token = volumeOf(cx.template, tokenFile);
  const source = token?.volume.projected?.sources?.find((p) => p.serviceAccountToken?.path === token.inner)?.serviceAccountToken;
  const fix = 'mount a projected serviceAccountToken with audience istio-ca at tls.istioCa.tokenFile (examples/kubernetes/deployment.yaml)';
  if (!source) add({ id: 'certificate.identity', status: 'fail', message: `Deployment ${cx.ns}/${cx.deployName} mounts no projected service-account token at ${tokenFile}: istiod cannot authenticate waygate's CSR`, fix });
  else if (source.audience !== 'istio-ca') add({ id: 'certificate.identity', status: 'fail', message: `the token at ${tokenFile} has audience ${source.audience ?? '(the API server\'s)'}; istiod accepts only audience istio-ca`, fix });
  else if (ca.identity && ca.identity !== want) {
    add({ id: 'certificate.identity', status: 'fail', message: `tls.istioCa.identity is ${ca.identity}, but the pods run as ServiceAccount ${cx.serviceAccount}: istiod issues ${want}, and waygate refuses a certificate for another identity`,
      fix: `set tls.istioCa.identity to ${want}, or remove it (the pod's own is the default)` });
  } else add({ id: 'certificate.identity', status: 'ok', message: `the mesh CA issues ${want}: token of audience istio-ca at ${tokenFile}` });

  const rootFile = trustBundleFiles[0];
  const root = rootFile === undefined ? undefined : volumeOf(cx.template, rootFile);
  if (!root || root.volume.configMap?.name !== ISTIO_ROOT_CONFIGMAP) {
    add({ id: 'certificate.root', status: 'fail', message: `tls.trustBundleFiles (${trustBundleFiles.join(', ') || 'none'}) is not the ConfigMap ${ISTIO_ROOT_CONFIGMAP} mounted by Deployment ${cx.ns}/${cx.deployName}: waygate verifies istiod and its certificates against the mesh root`,
      fix: `mount ConfigMap ${ISTIO_ROOT_CONFIGMAP} and point tls.trustBundleFiles at its root-cert.pem (examples/kubernetes/deployment.yaml)` });
    return;
  }
  const anchors = await meshRootAnchors(cx, root.inner, add);
  if (anchors === undefined) return;
  if (anchors.length === 0) add({ id: 'certificate.root', status: 'fail', message: `ConfigMap ${cx.ns}/${ISTIO_ROOT_CONFIGMAP} holds no certificate under ${root.inner}` });
  else add({ id: 'certificate.root', status: 'ok', message: `the mesh root (${ISTIO_ROOT_CONFIGMAP} ${root.inner}, ${anchors.length} certificate(s)) is mounted at ${rootFile}` });
}

const MARK: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skipped: 'skip' };

/** The report as text: one line per check, its fix under it. */
export function formatDoctorText(r: DoctorReport, out: TextSink = stdout()): string {
  const st = styleFor(out);
  const colour = { ok: st.green, warn: st.yellow, fail: st.red, skipped: st.dim };
  const lines = [`waygate doctor: Gateway ${r.namespace}/${r.gateway} via ${r.server} (${r.credentials})${r.fronted.length ? `, fronting ${r.fronted.join(', ')}` : ''}`];
  const width = Math.max(...r.checks.map((c) => c.id.length));
  for (const c of r.checks) {
    lines.push(`  ${colour[c.status](MARK[c.status].padEnd(4))}  ${c.id.padEnd(width)}  ${c.message}`);
    if (c.fix && (c.status === 'fail' || c.status === 'warn')) lines.push(`  ${' '.repeat(4)}  ${' '.repeat(width)}  ${st.cyan('fix:')} ${c.fix}`);
  }
  lines.push(`${r.summary.fail} failed, ${r.summary.warn} warning(s), ${r.summary.ok} ok, ${r.summary.skipped} skipped`);
  return lines.join('\n') + '\n';
}


/** `waygate doctor`: runs the checks, prints the report, leaves the exit code in process.exitCode. */
export async function doctorCommand(flags: DoctorFlags): Promise<void> {
  let report: DoctorReport;
  try {
    report = await runDoctor({ ...flags, fronted: flags.fronted ?? [] });
  } catch (err) {
    if (!(err instanceof DoctorCannotRun)) throw err;
    if (flags.output === 'json') writeJson({ error: { code: err.code, message: err.message } });
    else stderr().write(`waygate doctor: cannot run: ${err.message}\n`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (flags.output === 'json') writeJson(report);
  else stdout().write(formatDoctorText(report));
  if (report.summary.fail > 0) process.exitCode = EXIT_FAILURE;
}
