/**
 * Registration that stays true (config `registration`, docs/kubernetes.md): waygate is the
 * controller of its GatewayClass (`registration.controllerName`) and keeps the status of the
 * Gateways of that class in its own namespace what istiod needs to make it a waypoint.
 *
 * What istiod reads (istio/istio pilot/pkg/serviceregistry/ambient/waypoints.go):
 * - a Gateway with no `status.addresses` is not a waypoint at all (gatewayToWaypointTransform);
 * - getGatewayAddress prefers a `Hostname` address, looked up as a Service **in the Gateway's own
 *   namespace**, and falls back to an `IPAddress`; the HBONE port is always 15008;
 * - allowedRoutes come from the listener with protocol HBONE on port 15008.
 * So the status written here is `Hostname <svc>.<ns>.svc.<clusterDomain>` plus the Service's
 * ClusterIPs as `IPAddress` (IPs first, then the hostname), as Istio's own waypoint class reports
 * them ("report both", gatewaycommon/classinfo.go): current istiod resolves the hostname, older
 * ones consumed the IP. When the Service is missing the hostname is still written (Programmed
 * False, AddressNotAssigned): istiod keeps treating the Gateway as the waypoint, so the fronted
 * namespaces fail closed instead of being sent around waygate; once the Service exists it resolves.
 *
 * Conditions follow the Gateway API spec (sigs.k8s.io/gateway-api apis/v1/gateway_types.go) as
 * Istio's controller writes them (gatewaycommon SetListenerConditions, kstatus
 * UpdateConditionIfChanged): each carries observedGeneration; lastTransitionTime changes only when
 * the status flips; condition types written by someone else are kept (the spec's read-modify-write
 * rule for listType=map conditions).
 *
 * No write storms: a status is written only when it differs from the stored one, so the watch
 * event of our own write changes nothing. Every write is a resourceVersion-conditional PUT of the
 * status subresource; several replicas compute the same status (messages carry no pod names) and
 * a 409 Conflict is answered by reading the Gateway again and writing only if it still differs.
 * A Gateway recreated or a status edited by hand arrives as a watch event and is written again.
 *
 * It says loudly when it cannot: an error log line per change of state (a 403 names the exact RBAC
 * rule missing), and the gauge `waygate_registration_status{state}`.
 *
 * API calls (the RBAC in examples/kubernetes/rbac.yaml): get/list/watch `gateways` and update
 * `gateways/status` in the namespace; get `services` (the one named by `registration.serviceName`);
 * get/list/watch `gatewayclasses` and update `gatewayclasses/status` (cluster-scoped).
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import type { OpsLogger } from '../telemetry/log.ts';
import { RegistrationMetrics, type RegistrationState } from '../telemetry/metrics.ts';
import { apiStatus, apiStatusMessage, kubeClient, loadKubeConfig } from './client.ts';

export type { RegistrationState } from '../telemetry/metrics.ts';

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
const GATEWAY_API_VERSION = 'v1';
/** The one listener waygate serves: istiod's waypoint HBONE listener (waypoints.go makeAllowedRoutes). */
export const HBONE_PORT = 15008;
export const HBONE_PROTOCOL = 'HBONE';
/**
 * The protocol of the listener istiod binds a waypoint's inbound to in sandwich mode (the Gateway
 * annotation `ambient.istio.io/waypoint-inbound-binding: PROXY/<port>`, waypoints.go
 * findBoundListener; docs/waypoint.md "Sandwich mode"): served by the sandwich listener.
 */
export const PROXY_PROTOCOL = 'istio.io/PROXY';

/** The `registration` config section (kube-contract: config keys). */
export interface RegistrationConfig {
  enabled: boolean;
  gatewayClassName: string;
  controllerName: string;
  /** "": the pod's namespace (POD_NAMESPACE, Downward API). */
  namespace: string;
  serviceName: string;
}

export interface RegistrationOptions {
  registration: RegistrationConfig;
  /** Hostnames are `<svc>.<ns>.svc.<clusterDomain>`. */
  clusterDomain: string;
  /** The port of `sandwich.listen`, whose `istio.io/PROXY` listener waygate then serves; null: off. */
  sandwichPort?: number | null;
  /** An explicit kubeconfig (else in-cluster / KUBECONFIG: src/kube/client.ts). */
  kubeconfig?: string | null | undefined;
  log: OpsLogger;
  env?: NodeJS.ProcessEnv;
  /** Backoff after a failed call or a watch that ended in error: first delay, doubling to the max. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How often the Service is read again without any event (its ClusterIPs; RBAC allows get only). */
  resyncMs?: number;
}

/** A condition as the API stores it (metav1.Condition). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export interface GatewayStatusAddress {
  type: 'Hostname' | 'IPAddress';
  value: string;
}

export interface ListenerStatus {
  name: string;
  supportedKinds: { group?: string; kind: string }[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  addresses?: GatewayStatusAddress[];
  conditions?: Condition[];
  listeners?: ListenerStatus[];
  [k: string]: unknown;
}

/** The parts of objects read here (plain JSON as the API server returns them). */
export interface KubeMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  generation?: number;
  uid?: string;
  labels?: Record<string, string>;
}
export interface GatewayObject {
  apiVersion?: string;
  kind?: string;
  metadata: KubeMeta;
  spec: {
    gatewayClassName: string;
    listeners?: { name: string; port: number; protocol: string; allowedRoutes?: unknown }[];
  };
  status?: GatewayStatus;
}
export interface GatewayClassObject {
  apiVersion?: string;
  kind?: string;
  metadata: KubeMeta;
  spec: { controllerName: string };
  status?: { conditions?: Condition[]; [k: string]: unknown };
}
export interface ServiceObject {
  metadata: KubeMeta;
  spec?: { clusterIP?: string; clusterIPs?: string[]; ports?: { port: number; name?: string }[] };
}

/** What a pass over the class and its Gateways found and did (emitted as `reconciled`). */
export interface ReconcileResult {
  state: RegistrationState;
  /** Status writes this pass made (0 when everything was already true). */
  writes: number;
  /** Gateways of the class in the namespace. */
  gateways: string[];
  message: string;
}

/** The RFC 3339 time the API server stores (seconds precision). */
const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Sets `want` in `existing` as Istio's kstatus.UpdateConditionIfChanged does: unchanged (same
 * status, reason, message and generation) keeps the stored condition as it is; the same status
 * keeps its lastTransitionTime; others are left alone. Order: stored order, new types appended.
 */
export function setConditions(existing: readonly Condition[] | undefined, want: readonly Condition[], generation: number): Condition[] {
  const out = (existing ?? []).map((c) => ({ ...c }));
  for (const w of want) {
    const next: Condition = { ...w, observedGeneration: generation, lastTransitionTime: now() };
    const i = out.findIndex((c) => c.type === w.type);
    if (i === -1) { out.push(next); continue; }
    const cur = out[i]!;
    if (cur.status === w.status && cur.reason === w.reason && cur.message === w.message && cur.observedGeneration === generation) continue;
    if (cur.status === w.status && cur.lastTransitionTime) next.lastTransitionTime = cur.lastTransitionTime;
    out[i] = next;
  }
  return out;
}

const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition => ({ type, status, reason, message });

/** `<svc>.<ns>.svc.<clusterDomain>`: the Service's name as istiod indexes it. */
export function serviceHostname(service: string, namespace: string, clusterDomain: string): string {
  return `${service}.${namespace}.svc.${clusterDomain}`;
}

/** The status the Gateway must have, given the Service (null: not found) and what is stored. */
export function desiredGatewayStatus(gw: GatewayObject, service: ServiceObject | null, opts: { serviceName: string; clusterDomain: string; sandwichPort?: number | null }): GatewayStatus {
  const ns = gw.metadata.namespace ?? '';
  const generation = gw.metadata.generation ?? 0;
  const existing = gw.status ?? {};
  const hostname = serviceHostname(opts.serviceName, ns, opts.clusterDomain);
  const listeners = gw.spec.listeners ?? [];
  const isHbone = (l: { port: number; protocol: string }): boolean => l.port === HBONE_PORT && l.protocol === HBONE_PROTOCOL;
  const sandwichPort = opts.sandwichPort ?? null;
  // In sandwich mode the PROXY listener istiod binds to is served too (by src/sandwich/listener.ts).
  const served = (l: { port: number; protocol: string }): boolean => isHbone(l) || (l.protocol === PROXY_PROTOCOL && l.port === sandwichPort);
  const valid = listeners.filter(isHbone).length;
  const servedCount = listeners.filter(served).length;
  const serves = sandwichPort === null ? `port ${HBONE_PORT} with protocol "${HBONE_PROTOCOL}"` : `port ${HBONE_PORT} with protocol "${HBONE_PROTOCOL}" and port ${sandwichPort} with protocol "${PROXY_PROTOCOL}" (sandwich.listen)`;

  let accepted: Condition;
  if (valid === 0) {
    accepted = cond('Accepted', 'False', 'ListenersNotValid', `waygate serves one listener, on port ${HBONE_PORT} with protocol "${HBONE_PROTOCOL}"; this Gateway has none`);
  } else if (servedCount < listeners.length) {
    accepted = cond('Accepted', 'True', 'ListenersNotValid', `One or more of the Gateway's listeners are invalid: waygate serves only ${serves}`);
  } else {
    accepted = cond('Accepted', 'True', 'Accepted', 'Resource accepted');
  }

  const clusterIPs = (service?.spec?.clusterIPs ?? (service?.spec?.clusterIP ? [service.spec.clusterIP] : [])).filter((ip) => isIP(ip) !== 0);
  const servicePorts = service?.spec?.ports ?? [];
  const svcRef = `Service ${ns}/${opts.serviceName}`;
  let programmed: Condition;
  if (valid === 0) {
    programmed = cond('Programmed', 'False', 'Invalid', `no listener on port ${HBONE_PORT} with protocol "${HBONE_PROTOCOL}" to program`);
  } else if (!service) {
    programmed = cond('Programmed', 'False', 'AddressNotAssigned', `${svcRef} not found: the status address ${hostname} names it (registration.serviceName); create it (examples/kubernetes/service.yaml)`);
  } else if (clusterIPs.length === 0) {
    programmed = cond('Programmed', 'False', 'AddressNotUsable', `${svcRef} has no ClusterIP (headless?): ztunnel sends to a waypoint through its Service address; give it a ClusterIP`);
  } else if (!servicePorts.some((p) => p.port === HBONE_PORT)) {
    programmed = cond('Programmed', 'False', 'AddressNotUsable', `${svcRef} has no port ${HBONE_PORT}: ztunnel sends HBONE to the waypoint's address on port ${HBONE_PORT}; add it`);
  } else {
    programmed = cond('Programmed', 'True', 'Programmed', `Resource programmed, assigned to service(s) ${hostname}:${HBONE_PORT}`);
  }

  // IPs first, then the hostname, as Istio's waypoint class reports both (see the file comment).
  const addresses: GatewayStatusAddress[] = [
    ...clusterIPs.map((value) => ({ type: 'IPAddress' as const, value })),
    { type: 'Hostname', value: hostname },
  ];

  const listenerStatus: ListenerStatus[] = listeners.map((l) => {
    const stored = existing.listeners?.find((s) => s.name === l.name);
    const ok = served(l);
    const want = ok
      ? [
          cond('Accepted', 'True', 'Accepted', 'No errors found'),
          cond('Conflicted', 'False', 'NoConflicts', 'No errors found'),
          cond('Programmed', 'True', 'Programmed', 'No errors found'),
          cond('ResolvedRefs', 'True', 'ResolvedRefs', 'No errors found'),
        ]
      : [
          cond('Accepted', 'False', l.port === HBONE_PORT || l.port === sandwichPort ? 'UnsupportedProtocol' : 'PortUnavailable',
            l.protocol === PROXY_PROTOCOL && sandwichPort === null
              ? `waygate serves "${PROXY_PROTOCOL}" only in sandwich mode: sandwich.listen is off`
              : `waygate serves ${serves}`),
          cond('Conflicted', 'False', 'NoConflicts', 'No errors found'),
          cond('Programmed', 'False', 'Invalid', 'Listener is not accepted'),
          cond('ResolvedRefs', 'True', 'ResolvedRefs', 'No errors found'),
        ];
    // HBONE carries no Routes: nothing attaches (Istio's waypoint listener reports the same).
    return { name: l.name, supportedKinds: [], attachedRoutes: 0, conditions: setConditions(stored?.conditions, want, generation) };
  });

  return {
    ...existing,
    addresses,
    conditions: setConditions(existing.conditions, [accepted, programmed], generation),
    listeners: listenerStatus,
  };
}

/** The status waygate's GatewayClass must have. */
export function desiredClassStatus(gc: GatewayClassObject, controllerName: string): NonNullable<GatewayClassObject['status']> {
  const existing = gc.status ?? {};
  // The same words from every replica and every namespace's deployment, so none rewrites another's.
  const accepted = cond('Accepted', 'True', 'Accepted',
    `Handled by waygate (${controllerName}); each waygate deployment programs only the Gateways of this class in its own namespace`);
  return { ...existing, conditions: setConditions(existing.conditions, [accepted], gc.metadata.generation ?? 0) };
}

/** One API call, described as the RBAC rule it needs. */
interface ApiCall {
  verb: 'get' | 'list' | 'watch' | 'update';
  group: string;
  resource: string;
  namespace: string | null;
  name?: string;
}

/** The RBAC rule a call needs, as a person would add it to the Role or ClusterRole. */
export function missingRule(call: ApiCall): string {
  const where = call.namespace ? `a Role in namespace ${call.namespace}` : 'a ClusterRole';
  const names = call.name ? `, resourceNames: [${call.name}]` : '';
  return `${where} bound to waygate's ServiceAccount needs {apiGroups: ["${call.group}"], resources: [${call.resource}]${names}, verbs: [${call.verb}]} (examples/kubernetes/rbac.yaml)`;
}

/** The API server's own words (a Status body), or the error's message. */
function apiMessage(err: unknown): string {
  return apiStatusMessage(err) ?? (err as Error)?.message ?? String(err);
}

/** A call failed in a way that names what to fix. */
class CallError extends Error {
  constructor(readonly call: ApiCall, readonly status: number | undefined, override readonly cause: unknown) {
    super(apiMessage(cause));
  }
}

type Informer<T> = import('@kubernetes/client-node').Informer<T & import('@kubernetes/client-node').KubernetesObject>
  & import('@kubernetes/client-node').ObjectCache<T & import('@kubernetes/client-node').KubernetesObject>;

/** How long {@link GatewayRegistration.close} waits for a pass in flight. */
const CLOSE_WAIT_MS = 2_000;

/** Conflicts answered (re-read, re-compare, re-write) before the pass gives up and retries later. */
const MAX_CONFLICT_RETRIES = 5;

/**
 * The registration controller. {@link start} lists and watches; every event (and the resync timer)
 * schedules one reconcile pass, never two at once. Emits `reconciled` (ReconcileResult) after each
 * pass and `state` when the state changes.
 */
export class GatewayRegistration extends EventEmitter {
  readonly metrics = new RegistrationMetrics();
  readonly namespace: string;
  #state: RegistrationState = 'starting';
  #lastProblem = '';
  readonly #o: Required<Omit<RegistrationOptions, 'kubeconfig' | 'env'>> & Pick<RegistrationOptions, 'kubeconfig'>;
  #custom: import('@kubernetes/client-node').CustomObjectsApi | undefined;
  #core: import('@kubernetes/client-node').CoreV1Api | undefined;
  #classes: Informer<GatewayClassObject> | undefined;
  #gateways: Informer<GatewayObject> | undefined;
  #running = false;
  #dirty = false;
  #closed = false;
  #retryMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  #idle: Promise<void> = Promise.resolve();
  /** Per object (kind/name: bounded by the objects there are): the resourceVersion our last status write replaced, and the one it made. */
  readonly #lastWrites = new Map<string, { from: string; to: string }>();
  /** The informers whose list has arrived at least once. */
  readonly #listed = new Set<'gatewayclasses' | 'gateways'>();

  constructor(opts: RegistrationOptions) {
    super();
    const env = opts.env ?? process.env;
    const namespace = opts.registration.namespace || env['POD_NAMESPACE'] || '';
    if (!namespace) {
      throw new WaygateError('WG_CONFIG', 'registration.namespace is empty and POD_NAMESPACE is not set: set registration.namespace, or pass POD_NAMESPACE from the Downward API (examples/kubernetes/deployment.yaml)');
    }
    this.namespace = namespace;
    this.#o = {
      registration: opts.registration,
      clusterDomain: opts.clusterDomain,
      sandwichPort: opts.sandwichPort ?? null,
      kubeconfig: opts.kubeconfig,
      log: opts.log,
      retryInitialMs: opts.retryInitialMs ?? 1_000,
      retryMaxMs: opts.retryMaxMs ?? 60_000,
      resyncMs: opts.resyncMs ?? 60_000,
    };
    this.#retryMs = this.#o.retryInitialMs;
    this.metrics.setState(this.#state);
  }

  get state(): RegistrationState {
    return this.#state;
  }

  /** Loads credentials (throws WG_KUBE when there are none) and starts watching; does not wait for a sync. */
  async start(): Promise<void> {
    const { config, from, server } = await loadKubeConfig({ kubeconfig: this.#o.kubeconfig });
    const k8s = await kubeClient();
    this.#custom = config.makeApiClient(k8s.CustomObjectsApi);
    this.#core = config.makeApiClient(k8s.CoreV1Api);
    const reg = this.#o.registration;
    this.#o.log.info({ from, server, namespace: this.namespace, gatewayClass: reg.gatewayClassName, controllerName: reg.controllerName, service: reg.serviceName },
      'registration: keeping the status of the Gateways of the class true');

    const custom = this.#custom;
    this.#classes = k8s.makeInformer<GatewayClassObject & import('@kubernetes/client-node').KubernetesObject>(config,
      `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/gatewayclasses`,
      () => this.#call({ verb: 'list', group: GATEWAY_API_GROUP, resource: 'gatewayclasses', namespace: null },
        () => custom.listClusterCustomObject({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, plural: 'gatewayclasses' }))
        .then((list) => { this.#listed.add('gatewayclasses'); return list; }));
    this.#gateways = k8s.makeInformer<GatewayObject & import('@kubernetes/client-node').KubernetesObject>(config,
      `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/namespaces/${this.namespace}/gateways`,
      () => this.#call({ verb: 'list', group: GATEWAY_API_GROUP, resource: 'gateways', namespace: this.namespace },
        () => custom.listNamespacedCustomObject({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, namespace: this.namespace, plural: 'gateways' }))
        .then((list) => { this.#listed.add('gateways'); return list; }));
    this.#watch(this.#classes, { verb: 'watch', group: GATEWAY_API_GROUP, resource: 'gatewayclasses', namespace: null });
    this.#watch(this.#gateways, { verb: 'watch', group: GATEWAY_API_GROUP, resource: 'gateways', namespace: this.namespace });
    this.#armResync();
  }

  /** Wires an informer: any change schedules a pass; an error is reported, then the informer restarts after the backoff. */
  #watch(informer: Informer<unknown>, call: ApiCall): void {
    const changed = (): void => this.#schedule();
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('error', (err: unknown) => {
      if (this.#closed) return;
      // A list failure arrives as the CallError thrown by #call; a watch failure as client-node's error.
      const failure = err instanceof CallError ? err : new CallError(call, apiStatus(err), err);
      this.#report(failure);
      const timer = setTimeout(() => {
        this.#restartTimers.delete(timer);
        // Once watching again, one pass: nothing may have changed, but the state must say so.
        if (!this.#closed) void informer.start().then(changed, (e: unknown) => this.#report(new CallError(call, apiStatus(e), e)));
      }, this.#nextRetryMs());
      this.#restartTimers.add(timer);
    });
    void informer.start().then(changed, (e: unknown) => this.#report(new CallError(call, apiStatus(e), e)));
  }

  #armResync(): void {
    this.#resyncTimer = setInterval(() => this.#schedule(), this.#o.resyncMs);
    this.#resyncTimer.unref();
  }

  #nextRetryMs(): number {
    const ms = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, this.#o.retryMaxMs);
    return ms;
  }

  /** Runs `fn`, turning its failure into a CallError that names the call. */
  async #call<T>(call: ApiCall, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new CallError(call, apiStatus(err), err);
    }
  }

  /** One pass at a time; events during a pass make one more pass after it. */
  #schedule(): void {
    // Until both lists arrived, "no Gateway" or "no class" would only mean "not read yet".
    if (this.#closed || this.#listed.size < 2) return;
    this.#dirty = true;
    if (this.#running) return;
    this.#running = true;
    this.#idle = (async () => {
      while (this.#dirty && !this.#closed) {
        this.#dirty = false;
        try {
          const result = await this.#reconcile();
          this.#retryMs = this.#o.retryInitialMs;
          this.#setState(result.state, result.message);
          this.emit('reconciled', result);
        } catch (err) {
          this.#report(err);
          this.emit('reconciled', { state: this.#state, writes: 0, gateways: [], message: (err as Error).message } satisfies ReconcileResult);
          if (!this.#closed) {
            clearTimeout(this.#retryTimer);
            this.#retryTimer = setTimeout(() => this.#schedule(), this.#nextRetryMs());
          }
        }
      }
      this.#running = false;
    })();
  }

  async #reconcile(): Promise<ReconcileResult> {
    const reg = this.#o.registration;
    const classes = this.#classes!;
    const gc = classes.get(reg.gatewayClassName) as GatewayClassObject | undefined;
    const ours = (this.#gateways!.list(this.namespace) as GatewayObject[])
      .filter((g) => g.spec?.gatewayClassName === reg.gatewayClassName)
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const names = ours.map((g) => g.metadata.name);
    if (!gc) {
      return { state: 'class_missing', writes: 0, gateways: names,
        message: `GatewayClass ${reg.gatewayClassName} not found: create it with spec.controllerName ${reg.controllerName} (examples/kubernetes/gateway-api.yaml); until then istiod has no waypoint from waygate` };
    }
    if (gc.spec?.controllerName !== reg.controllerName) {
      return { state: 'class_not_ours', writes: 0, gateways: names,
        message: `GatewayClass ${reg.gatewayClassName} names controller ${gc.spec?.controllerName ?? '(none)'}, not ${reg.controllerName} (registration.controllerName): another controller owns it, waygate writes no status; use a class of its own` };
    }
    let writes = 0;
    // The class's status is for people (kubectl get gatewayclass); the Gateways' is what istiod
    // reads: a failure to write the first must not keep the second from being written.
    let classError: unknown;
    const classStatus = desiredClassStatus(gc, reg.controllerName);
    if (!isDeepStrictEqual(classStatus, gc.status ?? {})) {
      try {
        writes += await this.#writeClassStatus(gc);
      } catch (err) {
        classError = err;
      }
    }
    if (ours.length === 0) {
      if (classError) throw classError;
      return { state: 'gateway_missing', writes, gateways: [],
        message: `no Gateway of class ${reg.gatewayClassName} in namespace ${this.namespace}: istiod has no waypoint for the fronted namespaces; create it (examples/kubernetes/gateway-api.yaml). A Gateway of this class in another namespace is not served by this deployment (its Service is here)` };
    }
    const service = await this.#readService();
    for (const gw of ours) writes += await this.#writeGatewayStatus(gw, service);
    if (classError) throw classError;
    const svcName = `${this.namespace}/${reg.serviceName}`;
    if (!service) {
      return { state: 'service_missing', writes, gateways: names,
        message: `Service ${svcName} not found: the Gateway's status address names it; create it (examples/kubernetes/service.yaml)` };
    }
    return { state: 'ok', writes, gateways: names, message: `status of Gateway(s) ${names.join(', ')} true (address ${serviceHostname(reg.serviceName, this.namespace, this.#o.clusterDomain)})` };
  }

  async #readService(): Promise<ServiceObject | null> {
    const reg = this.#o.registration;
    const core = this.#core!;
    try {
      return await this.#call({ verb: 'get', group: '', resource: 'services', namespace: this.namespace, name: reg.serviceName },
        () => core.readNamespacedService({ name: reg.serviceName, namespace: this.namespace }) as Promise<unknown> as Promise<ServiceObject>);
    } catch (err) {
      if (err instanceof CallError && err.status === 404) return null;
      throw err;
    }
  }

  /** Writes the Gateway's status if it differs; on 409 reads it again and retries. Returns the writes made. */
  async #writeGatewayStatus(initial: GatewayObject, service: ServiceObject | null): Promise<number> {
    const reg = this.#o.registration;
    const custom = this.#custom!;
    const name = initial.metadata.name;
    const base = { group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, namespace: this.namespace, plural: 'gateways', name };
    if (this.#behindOwnWrite('gateway', initial.metadata)) return 0;
    let gw = initial;
    for (let attempt = 0; ; attempt++) {
      const status = desiredGatewayStatus(gw, service, { serviceName: reg.serviceName, clusterDomain: this.#o.clusterDomain, sandwichPort: this.#o.sandwichPort });
      if (isDeepStrictEqual(status, gw.status ?? {})) return 0;
      try {
        const written = await this.#call({ verb: 'update', group: GATEWAY_API_GROUP, resource: 'gateways/status', namespace: this.namespace },
          () => custom.replaceNamespacedCustomObjectStatus({ ...base, body: { ...gw, status } }) as Promise<GatewayObject>);
        this.#wrote('gateway', gw.metadata, written.metadata);
        this.metrics.statusWrites.inc({ result: 'ok' });
        this.#o.log.info({ gateway: `${this.namespace}/${name}`, generation: gw.metadata.generation, addresses: status.addresses?.map((a) => a.value) }, 'registration: Gateway status written');
        return 1;
      } catch (err) {
        if (!(err instanceof CallError) || err.status !== 409) { this.metrics.statusWrites.inc({ result: 'error' }); throw err; }
        this.metrics.statusWrites.inc({ result: 'conflict' });
        if (attempt + 1 >= MAX_CONFLICT_RETRIES) throw err;
        // Someone (another replica, a person) wrote in between: read it again and compare again.
        try {
          gw = await this.#call({ verb: 'get', group: GATEWAY_API_GROUP, resource: 'gateways', namespace: this.namespace },
            () => custom.getNamespacedCustomObject(base) as Promise<GatewayObject>);
        } catch (e) {
          if (e instanceof CallError && e.status === 404) return 0; // deleted meanwhile: its watch event follows
          throw e;
        }
      }
    }
  }

  async #writeClassStatus(initial: GatewayClassObject): Promise<number> {
    const custom = this.#custom!;
    const base = { group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, plural: 'gatewayclasses', name: initial.metadata.name };
    if (this.#behindOwnWrite('gatewayclass', initial.metadata)) return 0;
    let gc = initial;
    for (let attempt = 0; ; attempt++) {
      const status = desiredClassStatus(gc, this.#o.registration.controllerName);
      if (isDeepStrictEqual(status, gc.status ?? {})) return 0;
      try {
        const written = await this.#call({ verb: 'update', group: GATEWAY_API_GROUP, resource: 'gatewayclasses/status', namespace: null, name: gc.metadata.name },
          () => custom.replaceClusterCustomObjectStatus({ ...base, body: { ...gc, status } }) as Promise<GatewayClassObject>);
        this.#wrote('gatewayclass', gc.metadata, written.metadata);
        this.metrics.statusWrites.inc({ result: 'ok' });
        return 1;
      } catch (err) {
        if (!(err instanceof CallError) || err.status !== 409) { this.metrics.statusWrites.inc({ result: 'error' }); throw err; }
        this.metrics.statusWrites.inc({ result: 'conflict' });
        if (attempt + 1 >= MAX_CONFLICT_RETRIES) throw err;
        gc = await this.#call({ verb: 'get', group: GATEWAY_API_GROUP, resource: 'gatewayclasses', namespace: null },
          () => custom.getClusterCustomObject(base) as Promise<GatewayClassObject>);
      }
    }
  }

  /**
   * The watch cache can still hold the version our last write replaced (its event is on the way):
   * comparing that with the desired status would write again and meet a 409. resourceVersions are
   * opaque (API concepts, "Resource versions"): only compared for equality.
   */
  #behindOwnWrite(kind: string, meta: KubeMeta): boolean {
    const w = this.#lastWrites.get(`${kind}/${meta.name}`);
    return w !== undefined && w.from === meta.resourceVersion;
  }

  #wrote(kind: string, before: KubeMeta, after: KubeMeta | undefined): void {
    if (before.resourceVersion && after?.resourceVersion) this.#lastWrites.set(`${kind}/${before.name}`, { from: before.resourceVersion, to: after.resourceVersion });
  }

  /** A failure: the state it means, logged at error once per distinct problem. */
  #report(err: unknown): void {
    if (this.#closed) return;
    if (err instanceof CallError) {
      const target = `${err.call.resource}${err.call.name ? ' ' + err.call.name : ''}${err.call.namespace ? ` in namespace ${err.call.namespace}` : ''}`;
      if (err.status === 403) {
        const rule = missingRule(err.call);
        this.#setState('forbidden', `the API server refused to ${err.call.verb} ${target} (403 Forbidden): ${rule}`, { rule, apiMessage: err.message });
        return;
      }
      const status = err.status ? ` (HTTP ${err.status})` : '';
      this.#setState('api_error', `cannot ${err.call.verb} ${target}${status}: ${err.message}; retrying with backoff (the status stays as last written)`);
      return;
    }
    this.#setState('api_error', `registration pass failed: ${(err as Error)?.message ?? String(err)}; retrying with backoff`);
  }

  #setState(state: RegistrationState, message: string, fields: Record<string, unknown> = {}): void {
    const problem = `${state} ${message}`;
    const changed = state !== this.#state;
    this.#state = state;
    this.metrics.setState(state);
    if (problem !== this.#lastProblem) {
      this.#lastProblem = problem;
      const line = { state, namespace: this.namespace, gatewayClass: this.#o.registration.gatewayClassName, ...fields };
      if (state === 'ok') this.#o.log.info(line, `registration: ${message}`);
      else this.#o.log.error(line, `registration: ${message}`);
    }
    if (changed) this.emit('state', state);
  }

  /** Stops watching and every timer; a pass in flight finishes (its writes are conditional anyway). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    for (const t of this.#restartTimers) clearTimeout(t);
    this.#restartTimers.clear();
    await Promise.all([this.#classes?.stop(), this.#gateways?.stop()]);
    // A pass in flight is waited for, within a bound: a call to an API server that stopped
    // answering must not hold up the drain (the write, if it lands, is conditional anyway).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#idle, new Promise<void>((r) => { timer = setTimeout(r, CLOSE_WAIT_MS); })]);
    clearTimeout(timer);
  }
}

/** Builds and starts the controller. Throws WG_CONFIG (no namespace) or WG_KUBE (no credentials). */
export async function startGatewayRegistration(opts: RegistrationOptions): Promise<GatewayRegistration> {
  const reg = new GatewayRegistration(opts);
  await reg.start();
  return reg;
}

/**
 * The serve path's entry point (src/gateway/gateway.ts imports this module only when
 * `registration.enabled`): the cluster domain and the credentials are Kubernetes discovery's when
 * it is configured (one kubeconfig rule for both: src/kube/client.ts).
 */
export function startRegistrationFromConfig(config: Readonly<GatewayConfig>, log: OpsLogger): Promise<GatewayRegistration> {
  const kube = (config.discovery as { kubernetes?: { clusterDomain?: string; kubeconfig?: string | null } | null }).kubernetes;
  return startGatewayRegistration({
    registration: config.registration,
    clusterDomain: kube?.clusterDomain ?? 'cluster.local',
    sandwichPort: config.sandwich.listen === null ? null : Number(config.sandwich.listen.slice(config.sandwich.listen.lastIndexOf(':') + 1)),
    kubeconfig: kube?.kubeconfig ?? null,
    log,
  });
}
