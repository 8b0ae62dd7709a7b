/**
 * List+watch of one resource in one namespace, as client-go's reflector does it (the API concepts
 * page, "Efficient detection of changes": https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes),
 * holding the objects in a cache the provider (provider.ts) maps to a snapshot.
 *
 * Why not client-node's ListWatch (node_modules/@kubernetes/client-node/dist/cache.js): it never
 * asks for bookmarks, stops for good on any error other than 410 (restart and backoff are the
 * caller's), applies a relist object by object (callbacks see half of it), and its watch has no
 * idle timeout. This loop uses client-node's typed list calls and its `Watch` for the stream, and
 * adds what is missing:
 *
 * - **list**, paged (`limit`, `continue`), applied as one swap of the cache: never half a relist;
 * - **watch** from the list's resourceVersion with `allowWatchBookmarks=true`; a BOOKMARK only
 *   moves the resourceVersion; a watch that ends (the server's `timeoutSeconds`, a dropped
 *   connection) resumes from the last resourceVersion seen, with no relist;
 * - **410 Gone** (an `ERROR` event with a 410 Status, or a 410 answer): the resourceVersion is too
 *   old (etcd compacted it), so it relists;
 * - **errors** (unreachable, 5xx, 401, 403, an in-stream ERROR): retried after an exponential
 *   backoff with jitter (`initialMs` doubling up to `maxMs`, each delay drawn from its upper half),
 *   reset by the next list that succeeds or the next event that arrives; the cache is kept, and the
 *   retry resumes from the last resourceVersion (a relist only if that is gone);
 * - **a silent watch**: nothing (no event, no bookmark) for `idleTimeoutMs` means the connection
 *   is probably dead without a FIN (a partition, a NAT timeout); it is aborted and resumed.
 *
 * The cache keeps whatever the server sent (plain JSON from the watch, client-node's model objects
 * from the list): the mapping reads both (map.ts).
 */
import type { CoreV1Api, DiscoveryV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { apiStatus, apiStatusMessage, kubeClient } from '../../kube/client.ts';

/** The kinds discovery watches, by their resource (plural) name, as RBAC names them. */
export type KubeResource = 'services' | 'endpointslices' | 'pods';
export const KUBE_RESOURCES: readonly KubeResource[] = ['services', 'endpointslices', 'pods'];

/** Why a list or watch failed, as `waygate_discovery_watch_errors_total{reason}` counts it. */
export type WatchErrorReason = 'unreachable' | 'unauthorized' | 'forbidden' | 'gone' | 'server' | 'idle' | 'error';

export interface WatchError {
  readonly resource: KubeResource;
  readonly namespace: string;
  /** `list` or `watch`. */
  readonly verb: 'list' | 'watch';
  readonly reason: WatchErrorReason;
  /** The HTTP status, when there was one. */
  readonly status?: number;
  /** What a person reads: what failed, and for 401/403 what to fix. */
  readonly message: string;
  /** When the next attempt starts (0: now). */
  readonly retryInMs: number;
}

export interface BackoffOptions {
  /** First delay. Default 1,000 ms. */
  initialMs?: number;
  /** Bound of the doubling. Default 30,000 ms. */
  maxMs?: number;
}

export interface ListWatchOptions {
  config: KubeConfig;
  resource: KubeResource;
  namespace: string;
  /** Applied to the list and the watch (the provider sets it for Services only). */
  labelSelector?: string;
  backoff?: BackoffOptions;
  /**
   * The watch's `timeoutSeconds` (the server ends the watch after it; it is then resumed). Default
   * a random 300-600 s per watch, as client-go's reflector, so watches of many gateways do not all
   * end at once.
   */
  watchTimeoutSeconds?: number;
  /** Abort and resume a watch that delivered nothing (not even a bookmark) for this long. Default 660,000 ms. */
  idleTimeoutMs?: number;
  /** Page size of a list. Default 500, as client-go. */
  pageSize?: number;
  /** Random source for the jitter and the watch timeout (tests). */
  random?: () => number;
  /** The cache changed: a list replaced it, or an event added, changed or removed an object. */
  onChange(): void;
  /** A list completed (the first sync, or a relist); the cache holds exactly what it returned. */
  onSynced?(): void;
  /** A BOOKMARK moved the resourceVersion (no object changed). */
  onBookmark?(): void;
  /** A watch is open (the cache is current from here on, until an error). */
  onConnected?(): void;
  /** A list or watch failed; it is retried after `retryInMs`. */
  onError?(err: WatchError): void;
}

type ListResult = { items: unknown[]; metadata?: { resourceVersion?: string; _continue?: string } };
type Lister = (args: { namespace: string; labelSelector?: string; limit: number; _continue?: string }) => Promise<ListResult>;

interface Clients {
  core: CoreV1Api;
  discovery: DiscoveryV1Api;
  watch: Watch;
}
const clients = new WeakMap<KubeConfig, Clients>();

async function clientsFor(config: KubeConfig): Promise<Clients> {
  let c = clients.get(config);
  if (!c) {
    const k8s = await kubeClient();
    c = { core: config.makeApiClient(k8s.CoreV1Api), discovery: config.makeApiClient(k8s.DiscoveryV1Api), watch: new k8s.Watch(config) };
    clients.set(config, c);
  }
  return c;
}

function listerFor(c: Clients, resource: KubeResource): Lister {
  switch (resource) {
    case 'services': return (a) => c.core.listNamespacedService(a) as Promise<ListResult>;
    case 'pods': return (a) => c.core.listNamespacedPod(a) as Promise<ListResult>;
    case 'endpointslices': return (a) => c.discovery.listNamespacedEndpointSlice(a) as Promise<ListResult>;
  }
}

/** The watch path of a resource in a namespace. */
export function resourcePath(resource: KubeResource, namespace: string): string {
  const ns = encodeURIComponent(namespace);
  return resource === 'endpointslices' ? `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices` : `/api/v1/namespaces/${ns}/${resource}`;
}

const API_GROUP: Record<KubeResource, string> = { services: '', pods: '', endpointslices: 'discovery.k8s.io' };

type KubeObject = { metadata?: { name?: string; resourceVersion?: string; managedFields?: unknown; annotations?: Record<string, string> } };

/**
 * Drops what the cache would hold for nothing: `managedFields` (server-side apply bookkeeping,
 * often the larger part of an object) and kubectl's last-applied copy of the whole object. The
 * mapping reads neither (map.ts reads one annotation, the ambient redirection).
 */
function slim(obj: unknown): unknown {
  const meta = (obj as KubeObject | null)?.metadata;
  if (meta) {
    delete meta.managedFields;
    if (meta.annotations) delete meta.annotations['kubectl.kubernetes.io/last-applied-configuration'];
  }
  return obj;
}

function classify(status: number | undefined, err: unknown): WatchErrorReason {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 410) return 'gone';
  if (status !== undefined && (status === 429 || status >= 500)) return 'server';
  if (status === undefined && typeof (err as { code?: unknown } | null)?.code === 'string') return 'unreachable'; // ECONNREFUSED, ECONNRESET, ...
  return 'error';
}

/** One resource in one namespace, listed and watched until {@link ListWatch.close}. */
export class ListWatch {
  readonly resource: KubeResource;
  readonly namespace: string;
  readonly #o: ListWatchOptions;
  readonly #random: () => number;
  /** name -> object. */
  #objects = new Map<string, unknown>();
  #resourceVersion = '';
  #synced = false;
  #connected = false;
  #closed = false;
  /** Bumped for every attempt: callbacks of an older one (an aborted watch's done) are ignored. */
  #attempt = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | null = null;
  #idle: NodeJS.Timeout | null = null;
  #abort: AbortController | null = null;

  constructor(opts: ListWatchOptions) {
    this.#o = opts;
    this.resource = opts.resource;
    this.namespace = opts.namespace;
    this.#random = opts.random ?? Math.random;
  }

  /** Starts listing (once). */
  start(): void {
    if (this.#attempt === 0 && !this.#closed) void this.#run();
  }

  /** The objects held, in no particular order. */
  objects(): unknown[] {
    return [...this.#objects.values()];
  }

  /** The last resourceVersion seen (list, event or bookmark); `""` before the first list or after a 410. */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /** A list has completed at least once. */
  get synced(): boolean {
    return this.#synced;
  }

  /** A watch is open and no error has happened since. */
  get connected(): boolean {
    return this.#connected;
  }

  close(): void {
    this.#closed = true;
    this.#attempt++;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#stopWatch();
  }

  #stopWatch(): void {
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = null;
    const abort = this.#abort;
    this.#abort = null;
    abort?.abort();
  }

  #backoffMs(): number {
    const initial = this.#o.backoff?.initialMs ?? 1_000;
    const max = this.#o.backoff?.maxMs ?? 30_000;
    const ceiling = Math.min(max, initial * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    // "Equal jitter": half fixed, half random, so retries of many gateways spread out but never
    // come sooner than half the step.
    return Math.round(ceiling / 2 + (ceiling / 2) * this.#random());
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    const attempt = ++this.#attempt;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (attempt === this.#attempt) void this.#run();
    }, delayMs);
  }

  #fail(verb: 'list' | 'watch', err: unknown, forced?: WatchErrorReason): void {
    if (this.#closed) return;
    this.#stopWatch();
    this.#connected = false;
    const status = apiStatus(err);
    const reason = forced ?? classify(status, err);
    const retryInMs = this.#backoffMs();
    this.#o.onError?.({
      resource: this.resource,
      namespace: this.namespace,
      verb,
      reason,
      ...(status !== undefined ? { status } : {}),
      message: this.#describe(verb, reason, status, err),
      retryInMs,
    });
    this.#schedule(retryInMs);
  }

  #describe(verb: 'list' | 'watch', reason: WatchErrorReason, status: number | undefined, err: unknown): string {
    const what = `${verb} ${this.resource} in namespace ${this.namespace}`;
    const said = apiStatusMessage(err);
    if (reason === 'forbidden') {
      const group = API_GROUP[this.resource] === '' ? 'core ("")' : `"${API_GROUP[this.resource]}"`;
      return `${what}: forbidden (403)${said ? `: ${said}` : ''}. The gateway's identity needs a Role in namespace ${this.namespace} ` +
        `allowing list and watch on ${this.resource} (API group ${group}), bound to its service account (docs/waypoint.md, "Kubernetes discovery")`;
    }
    if (reason === 'unauthorized') {
      return `${what}: unauthorized (401)${said ? `: ${said}` : ''}: the credentials were refused (an expired token, or a kubeconfig for another cluster)`;
    }
    if (reason === 'idle') return `${what}: the watch delivered nothing for ${this.#o.idleTimeoutMs ?? 660_000} ms; resuming it`;
    const detail = said ?? (err instanceof Error ? err.message : String(err));
    return `${what} failed${status !== undefined ? ` (${status})` : ''}: ${detail}`;
  }

  async #run(): Promise<void> {
    const attempt = this.#attempt;
    let c: Clients;
    try {
      c = await clientsFor(this.#o.config);
    } catch (err) {
      if (attempt === this.#attempt) this.#fail('list', err);
      return;
    }
    if (attempt !== this.#attempt || this.#closed) return;
    if (this.#resourceVersion === '') {
      const listed = await this.#list(c, attempt);
      if (!listed) return;
    }
    await this.#watch(c, attempt);
  }

  /** Lists every page, then swaps the cache in one step. False when it failed (retry scheduled) or was superseded. */
  async #list(c: Clients, attempt: number): Promise<boolean> {
    const list = listerFor(c, this.resource);
    const items: unknown[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    try {
      do {
        const page = await list({
          namespace: this.namespace,
          ...(this.#o.labelSelector ? { labelSelector: this.#o.labelSelector } : {}),
          limit: this.#o.pageSize ?? 500,
          ...(cont ? { _continue: cont } : {}),
        });
        if (attempt !== this.#attempt) return false;
        items.push(...(page.items ?? []));
        // Every page of one list is at the first page's resourceVersion.
        if (resourceVersion === '') resourceVersion = page.metadata?.resourceVersion ?? '';
        cont = page.metadata?._continue || undefined;
      } while (cont);
    } catch (err) {
      if (attempt !== this.#attempt) return false;
      // A 410 here is an expired continue token: start the list over, after a backoff like any error.
      this.#fail('list', err);
      return false;
    }
    const objects = new Map<string, unknown>();
    for (const o of items) {
      const name = (o as KubeObject).metadata?.name;
      if (name) objects.set(name, slim(o));
    }
    this.#objects = objects;
    this.#resourceVersion = resourceVersion;
    this.#failures = 0;
    this.#synced = true;
    this.#o.onSynced?.();
    this.#o.onChange();
    return true;
  }

  async #watch(c: Clients, attempt: number): Promise<void> {
    let ended = false;
    let events = 0;
    let gone = false;
    let streamError: unknown = null;
    const idleMs = this.#o.idleTimeoutMs ?? 660_000;
    const armIdle = (): void => {
      if (this.#idle) clearTimeout(this.#idle);
      this.#idle = setTimeout(() => {
        this.#idle = null;
        if (attempt !== this.#attempt || ended) return;
        ended = true;
        this.#fail('watch', new Error('idle'), 'idle');
      }, idleMs);
    };
    const onEvent = (type: string, obj: unknown): void => {
      if (attempt !== this.#attempt || ended) return;
      events++;
      this.#failures = 0;
      armIdle();
      const o = obj as KubeObject & { code?: number };
      if (type === 'ERROR') {
        // The server ends the stream after an ERROR event; what to do next is decided at the end.
        if (o.code === 410) gone = true;
        else streamError = Object.assign(new Error((obj as { message?: string }).message ?? 'watch error'), { statusCode: o.code, body: obj });
        return;
      }
      const rv = o.metadata?.resourceVersion;
      if (rv) this.#resourceVersion = rv;
      if (type === 'BOOKMARK') {
        this.#o.onBookmark?.();
        return;
      }
      const name = o.metadata?.name;
      if (!name) return;
      if (type === 'DELETED') {
        if (this.#objects.delete(name)) this.#o.onChange();
      } else if (type === 'ADDED' || type === 'MODIFIED') {
        this.#objects.set(name, slim(obj));
        this.#o.onChange();
      }
    };
    const onDone = (err: unknown): void => {
      if (attempt !== this.#attempt || ended) return;
      ended = true;
      this.#stopWatch();
      this.#connected = false;
      const status = apiStatus(err);
      if (gone || status === 410) {
        // Too old a resourceVersion: relist now (a 410 is no failure of the server).
        this.#resourceVersion = '';
        this.#schedule(0);
        return;
      }
      if (err || streamError) {
        this.#fail('watch', err ?? streamError);
        return;
      }
      // The server ended the watch (its timeout) or the connection closed cleanly: resume from the
      // last resourceVersion. A watch that ended without delivering anything waits a backoff step
      // first, so a server that keeps ending watches at once is not hammered.
      this.#schedule(events > 0 ? 0 : this.#backoffMs());
    };
    const timeoutSeconds = this.#o.watchTimeoutSeconds ?? Math.floor(300 + 300 * this.#random());
    const query: Record<string, string | number | boolean> = {
      resourceVersion: this.#resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds,
    };
    if (this.#o.labelSelector) query['labelSelector'] = this.#o.labelSelector;
    armIdle();
    let controller: AbortController;
    try {
      controller = await c.watch.watch(resourcePath(this.resource, this.namespace), query, onEvent, onDone);
    } catch (err) {
      onDone(err);
      return;
    }
    if (attempt !== this.#attempt || ended) {
      controller.abort();
      return;
    }
    this.#abort = controller;
    this.#connected = true;
    this.#o.onConnected?.();
  }
}
