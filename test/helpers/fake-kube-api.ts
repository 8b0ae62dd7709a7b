/**
 * A Kubernetes API server at its protocol boundary, for tests of the discovery provider, the
 * Gateway status writer and `waygate doctor` (no real API server runs here: docs/kubernetes.md).
 * It speaks what client-node and kubectl speak, over real HTTPS with a certificate from the test
 * PKI and bearer-token authentication:
 *
 * - paths: `/api/v1/[namespaces/NS/]PLURAL[/NAME[/status]]` and
 *   `/apis/GROUP/VERSION/[namespaces/NS/]PLURAL[/NAME[/status]]` for the kinds in {@link KINDS};
 * - GET list: `{kind: <Kind>List, apiVersion, metadata: {resourceVersion}, items}`, items without
 *   kind/apiVersion as a typed list has them; `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`);
 * - GET `?watch=true` (API concepts, "Efficient detection of changes"): from `resourceVersion`
 *   "" or "0" the current objects as synthetic ADDED, else the events after it; a resourceVersion
 *   older than the last {@link FakeKubeApi.compact} gets a 200 with one ERROR event carrying a
 *   410 `Expired` Status, then the end of the stream, as a real server does after etcd compaction;
 *   `allowWatchBookmarks=true` watches get BOOKMARK events on {@link FakeKubeApi.bookmark};
 * - POST create, PUT replace (optimistic concurrency: a stale `metadata.resourceVersion` is 409),
 *   PATCH (`merge-patch+json` RFC 7386, `strategic-merge-patch+json` treated as a merge patch,
 *   `json-patch+json` RFC 6902 add/replace/remove/test), DELETE; the `status` subresource writes
 *   only `.status`, and writes to the main resource keep the stored `.status`, as for every kind
 *   here that has a status subresource;
 * - errors are `Status` objects with `reason` and `code` (401, 403, 404, 405, 409, 410, 422).
 *
 * Controls for tests: apply/remove objects (events go to matching watches), end every watch,
 * compact, bookmark, refuse a verb on a resource (RBAC), stop and start again on the same port
 * (the API server going away), and a log of every request.
 */
import { EventEmitter, once } from 'node:events';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { testPki } from './pki.ts';

/** What this server knows about each kind it serves. */
interface KindInfo {
  kind: string;
  group: string; // '' for core
  version: string;
  plural: string;
  namespaced: boolean;
  /** Writes to the main resource keep `.status` (it has a status subresource). */
  statusSubresource: boolean;
}

export const KINDS: readonly KindInfo[] = [
  { kind: 'Service', group: '', version: 'v1', plural: 'services', namespaced: true, statusSubresource: true },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods', namespaced: true, statusSubresource: true },
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces', namespaced: false, statusSubresource: true },
  { kind: 'Secret', group: '', version: 'v1', plural: 'secrets', namespaced: true, statusSubresource: false },
  { kind: 'ConfigMap', group: '', version: 'v1', plural: 'configmaps', namespaced: true, statusSubresource: false },
  { kind: 'ServiceAccount', group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true, statusSubresource: false },
  { kind: 'Event', group: '', version: 'v1', plural: 'events', namespaced: true, statusSubresource: false },
  { kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', namespaced: true, statusSubresource: false },
  { kind: 'Deployment', group: 'apps', version: 'v1', plural: 'deployments', namespaced: true, statusSubresource: true },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true, statusSubresource: true },
  { kind: 'GatewayClass', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gatewayclasses', namespaced: false, statusSubresource: true },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespaced: true, statusSubresource: true },
  { kind: 'Lease', group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true, statusSubresource: false },
];

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
};

export interface RequestLogEntry {
  method: string;
  path: string;
  query: Record<string, string>;
  /** The Content-Type of a write. */
  contentType?: string;
  body?: unknown;
}

interface StoredEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  info: KindInfo;
  object: KubeObject;
}

interface OpenWatch {
  info: KindInfo;
  namespace: string | null;
  selector: Selector;
  bookmarks: boolean;
  res: ServerResponse;
}

export interface FakeKubeApi extends EventEmitter {
  /** `https://127.0.0.1:PORT`. */
  readonly url: string;
  readonly token: string;
  /** PEM of the CA that signed the server's certificate. */
  readonly caPem: string;
  /** Every request, in arrival order. */
  readonly requests: RequestLogEntry[];
  /** Writes a kubeconfig for this server into `dir` (token auth) and returns its path. */
  writeKubeconfig(dir: string, opts?: { token?: string; namespace?: string }): string;
  /** Creates or replaces an object (kind and apiVersion from the object) and tells the watches. Returns the stored copy. */
  apply(obj: KubeObject): KubeObject;
  /** Deletes an object and tells the watches; false when it did not exist. */
  remove(apiVersion: string, kind: string, namespace: string | null, name: string): boolean;
  /** The stored object (a copy), if any. */
  get(apiVersion: string, kind: string, namespace: string | null, name: string): KubeObject | undefined;
  /** The current resourceVersion (the last event's). */
  resourceVersion(): string;
  /** Number of open watches, optionally of one plural. */
  watchCount(plural?: string): number;
  /** Resolves once at least `n` watches (of `plural`, if given) are open. */
  waitForWatches(n: number, plural?: string): Promise<void>;
  /** Ends every open watch stream cleanly, as the server's watch timeout does. */
  endWatches(): void;
  /** Forgets the event history: a watch from any earlier resourceVersion gets 410 Gone. */
  compact(): void;
  /** Sends a BOOKMARK with the current resourceVersion to every watch that allows bookmarks. */
  bookmark(): void;
  /** Answers `verb` (get, list, watch, create, update, patch, delete) on `plural[/status]` with 403 until {@link allow}. */
  forbid(verb: string, resource: string): void;
  allow(verb: string, resource: string): void;
  /** The API server goes away: stops listening and cuts every connection. */
  stop(): Promise<void>;
  /** Comes back on the same port with the same objects. */
  start(): Promise<void>;
  close(): Promise<void>;
}

type Selector = (labels: Record<string, string> | undefined) => boolean;

function parseSelector(text: string | undefined): Selector | { error: string } {
  if (!text) return () => true;
  const terms: Selector[] = [];
  for (const raw of text.split(',')) {
    const term = raw.trim();
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      terms.push(op === '!=' ? (l) => l?.[key] !== value : (l) => l?.[key] === value);
    } else if ((m = term.match(/^!([\w./-]+)$/))) {
      const key = m[1]!;
      terms.push((l) => l?.[key] === undefined);
    } else if ((m = term.match(/^([\w./-]+)$/))) {
      const key = m[1]!;
      terms.push((l) => l?.[key] !== undefined);
    } else {
      return { error: `unable to parse requirement: ${term}` };
    }
  }
  return (labels) => terms.every((t) => t(labels));
}

const clone = <T>(v: T): T => structuredClone(v);
const apiVersionOf = (info: KindInfo): string => (info.group ? `${info.group}/${info.version}` : info.version);

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** RFC 7386 JSON Merge Patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON Patch (add, replace, remove, test): enough for what clients send. */
function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error('a JSON patch is an array of operations');
  let root = clone(doc);
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (parts.length === 0) {
      if (op.op === 'test') { if (JSON.stringify(root) !== JSON.stringify(op.value)) throw new Error('test failed'); continue; }
      root = clone(op.value);
      continue;
    }
    let parent = root as Record<string, unknown> | unknown[];
    for (const p of parts.slice(0, -1)) {
      const next = Array.isArray(parent) ? parent[Number(p)] : parent[p];
      if (next === undefined || next === null || typeof next !== 'object') throw new Error(`path ${op.path} does not exist`);
      parent = next as Record<string, unknown>;
    }
    const last = parts[parts.length - 1]!;
    if (op.op === 'test') {
      const cur = Array.isArray(parent) ? parent[Number(last)] : parent[last];
      if (JSON.stringify(cur) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
    } else if (op.op === 'remove') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (op.op === 'add' || op.op === 'replace') {
      if (Array.isArray(parent)) {
        if (last === '-') parent.push(clone(op.value));
        else if (op.op === 'add') parent.splice(Number(last), 0, clone(op.value));
        else parent[Number(last)] = clone(op.value);
      } else parent[last] = clone(op.value);
    } else {
      throw new Error(`unsupported JSON patch op ${op.op}`);
    }
  }
  return root;
}

/** Starts the server on 127.0.0.1, port 0. */
export async function startFakeKubeApi(opts: { token?: string } = {}): Promise<FakeKubeApi> {
  const pki = testPki();
  const token = opts.token ?? 'test-token-' + Math.random().toString(36).slice(2);
  const objects = new Map<string, KubeObject>(); // key: plural/namespace/name
  let events: StoredEvent[] = [];
  let compactedRv = 0;
  let rv = 1000;
  const watches = new Set<OpenWatch>();
  const forbidden = new Set<string>();
  const sockets = new Set<Socket>();
  const requests: RequestLogEntry[] = [];
  const emitter = new EventEmitter() as FakeKubeApi & EventEmitter;
  let port = 0;

  const keyOf = (info: KindInfo, ns: string | null, name: string): string => `${info.plural}/${info.namespaced ? ns ?? '' : ''}/${name}`;
  const infoOf = (apiVersion: string, kind: string): KindInfo => {
    const info = KINDS.find((k) => apiVersionOf(k) === apiVersion && k.kind === kind);
    if (!info) throw new Error(`fake-kube-api: unknown kind ${apiVersion} ${kind}`);
    return info;
  };

  const withType = (info: KindInfo, obj: KubeObject): KubeObject => ({ ...clone(obj), apiVersion: apiVersionOf(info), kind: info.kind });

  const writeEvent = (w: OpenWatch, type: string, object: unknown): void => {
    w.res.write(JSON.stringify({ type, object }) + '\n');
  };

  const matches = (w: OpenWatch, ev: StoredEvent): boolean =>
    w.info === ev.info && (w.namespace === null || ev.object.metadata.namespace === w.namespace) && w.selector(ev.object.metadata.labels);

  const record = (type: StoredEvent['type'], info: KindInfo, object: KubeObject): void => {
    const ev: StoredEvent = { rv: Number(object.metadata.resourceVersion), type, info, object: withType(info, object) };
    events.push(ev);
    for (const w of watches) if (matches(w, ev)) writeEvent(w, ev.type, ev.object);
  };

  const store = (info: KindInfo, obj: KubeObject, existing: KubeObject | undefined): KubeObject => {
    const stored = clone(obj);
    delete stored.apiVersion;
    delete stored.kind;
    const meta = stored.metadata;
    meta.resourceVersion = String(++rv);
    meta['uid'] = existing?.metadata['uid'] ?? `uid-${rv}`;
    meta['creationTimestamp'] = existing?.metadata['creationTimestamp'] ?? new Date(Date.UTC(2026, 11, 7)).toISOString().replace('.000', '');
    const generation = (existing?.metadata['generation'] as number | undefined) ?? 0;
    const specChanged = !existing || JSON.stringify(existing['spec']) !== JSON.stringify(stored['spec']);
    meta['generation'] = specChanged ? generation + 1 : generation;
    if (!info.namespaced) delete meta.namespace;
    objects.set(keyOf(info, meta.namespace ?? null, meta.name), stored);
    record(existing ? 'MODIFIED' : 'ADDED', info, stored);
    return stored;
  };

  const send = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const readBody = async (req: IncomingMessage): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };

  /** Parses a path into the kind, namespace, name and subresource it addresses. */
  const route = (pathname: string): { info: KindInfo; ns: string | null; name: string | null; sub: string | null } | null => {
    const parts = pathname.split('/').filter((p) => p !== '');
    let group = '';
    let version: string;
    let rest: string[];
    if (parts[0] === 'api') {
      version = parts[1] ?? '';
      rest = parts.slice(2);
    } else if (parts[0] === 'apis') {
      group = parts[1] ?? '';
      version = parts[2] ?? '';
      rest = parts.slice(3);
    } else return null;
    let ns: string | null = null;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      ns = rest[1]!;
      rest = rest.slice(2);
    }
    const info = KINDS.find((k) => k.group === group && k.version === version && k.plural === rest[0]);
    if (!info) return null;
    if (!info.namespaced && ns !== null) return null;
    return { info, ns, name: rest[1] ?? null, sub: rest[2] ?? null };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://fake');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    const entry: RequestLogEntry = { method, path: url.pathname, query };
    requests.push(entry);
    let bodyText = '';
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
      bodyText = await readBody(req);
      entry.contentType = req.headers['content-type'] ?? '';
      try { entry.body = JSON.parse(bodyText); } catch { entry.body = bodyText; }
    }
    emitter.emit('request', entry);
    if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    const r = route(url.pathname);
    if (!r) return send(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    const { info, ns, name, sub } = r;
    const watching = query['watch'] === 'true' || query['watch'] === '1';
    const verb = method === 'GET' ? (watching ? 'watch' : name ? 'get' : 'list')
      : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'PATCH' ? 'patch' : method === 'DELETE' ? 'delete' : method.toLowerCase();
    const resource = sub ? `${info.plural}/${sub}` : info.plural;
    if (forbidden.has(`${verb} ${resource}`)) {
      const who = 'system:serviceaccount:waygate:waygate';
      return send(res, 403, status(403, 'Forbidden', `${info.plural}${sub ? '/' + sub : ''} is forbidden: User "${who}" cannot ${verb} resource "${resource}" in API group "${info.group}"${ns ? ` in the namespace "${ns}"` : ' at the cluster scope'}`));
    }
    const notFound = (): void => send(res, 404, status(404, 'NotFound', `${info.plural}${info.group ? '.' + info.group : ''} "${name}" not found`));

    if (method === 'GET' && !name) {
      const selector = parseSelector(query['labelSelector']);
      if ('error' in selector) return send(res, 400, status(400, 'BadRequest', selector.error));
      const items = [...objects.entries()]
        .filter(([k, o]) => k.startsWith(info.plural + '/') && (ns === null || o.metadata.namespace === ns) && selector(o.metadata.labels))
        .map(([, o]) => clone(o));
      if (!watching) {
        return send(res, 200, { kind: `${info.kind}List`, apiVersion: apiVersionOf(info), metadata: { resourceVersion: String(rv) }, items });
      }
      const from = query['resourceVersion'] ?? '';
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      // A real server sends the headers at once; clients (client-node's Watch) wait for them.
      res.flushHeaders();
      const w: OpenWatch = { info, namespace: ns, selector, bookmarks: query['allowWatchBookmarks'] === 'true', res };
      if (from !== '' && from !== '0' && Number(from) < compactedRv) {
        writeEvent(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${compactedRv})`));
        res.end();
        return;
      }
      if (from === '' || from === '0') {
        for (const o of items) writeEvent(w, 'ADDED', withType(info, o));
      } else {
        for (const ev of events) if (ev.rv > Number(from) && matches(w, ev)) writeEvent(w, ev.type, ev.object);
      }
      watches.add(w);
      res.on('close', () => {
        watches.delete(w);
        emitter.emit('watchClosed', info.plural);
      });
      emitter.emit('watch', info.plural);
      return;
    }
    if (!name) {
      if (method !== 'POST') return send(res, 405, status(405, 'MethodNotAllowed', `${method} is not allowed on a collection`));
      const obj = entry.body as KubeObject;
      if (!obj?.metadata?.name) return send(res, 422, status(422, 'Invalid', 'metadata.name: Required value'));
      if (info.namespaced) obj.metadata.namespace = ns ?? obj.metadata.namespace ?? 'default';
      if (objects.has(keyOf(info, obj.metadata.namespace ?? null, obj.metadata.name))) {
        return send(res, 409, status(409, 'AlreadyExists', `${info.plural} "${obj.metadata.name}" already exists`));
      }
      return send(res, 201, withType(info, store(info, obj, undefined)));
    }
    const key = keyOf(info, ns, name);
    const existing = objects.get(key);
    if (method === 'GET') return existing ? send(res, 200, withType(info, existing)) : notFound();
    if (method === 'DELETE') {
      if (!existing) return notFound();
      objects.delete(key);
      const gone = clone(existing);
      gone.metadata.resourceVersion = String(++rv);
      record('DELETED', info, gone);
      return send(res, 200, withType(info, gone));
    }
    if (!existing) return notFound();
    let next: KubeObject;
    try {
      if (method === 'PUT') {
        next = entry.body as KubeObject;
        const sent = next?.metadata?.resourceVersion;
        if (sent && sent !== existing.metadata.resourceVersion) {
          return send(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on ${info.plural}${info.group ? '.' + info.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`));
        }
      } else if (method === 'PATCH') {
        const type = entry.contentType ?? '';
        if (type.startsWith('application/json-patch+json')) next = jsonPatch(existing, entry.body) as KubeObject;
        else if (type.startsWith('application/merge-patch+json') || type.startsWith('application/strategic-merge-patch+json')) next = mergePatch(existing, entry.body) as KubeObject;
        else return send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`));
        const sent = (entry.body as KubeObject | undefined)?.metadata?.resourceVersion;
        if (!Array.isArray(entry.body) && sent && sent !== existing.metadata.resourceVersion) {
          return send(res, 409, status(409, 'Conflict', `the object has been modified; please apply your changes to the latest version and try again`));
        }
      } else {
        return send(res, 405, status(405, 'MethodNotAllowed', `${method} is not allowed`));
      }
    } catch (err) {
      return send(res, 422, status(422, 'Invalid', (err as Error).message));
    }
    if (!next?.metadata) return send(res, 422, status(422, 'Invalid', 'metadata: Required value'));
    next.metadata = { ...next.metadata, name, ...(info.namespaced && ns ? { namespace: ns } : {}) };
    if (sub === 'status') {
      // The status subresource changes only .status.
      next = { ...clone(existing), status: next['status'] } as KubeObject;
    } else if (info.statusSubresource) {
      next = { ...next, status: clone(existing['status']) } as KubeObject;
      if (existing['status'] === undefined) delete next['status'];
    }
    if (JSON.stringify({ ...next, metadata: { ...next.metadata, resourceVersion: undefined } }) ===
        JSON.stringify({ ...existing, metadata: { ...existing.metadata, resourceVersion: undefined } })) {
      return send(res, 200, withType(info, existing)); // a no-op write changes nothing, as in the real server
    }
    return send(res, 200, withType(info, store(info, next, existing)));
  };

  const server = https.createServer({ cert: pki.serverCert.chainPem, key: pki.serverCert.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, status(500, 'InternalError', String(err)));
      else res.destroy();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const listen = async (): Promise<void> => {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  };
  await listen();

  const stop = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = once(server, 'close');
    server.close();
    for (const w of watches) w.res.destroy();
    for (const s of sockets) s.destroy();
    await closed;
  };

  Object.assign(emitter, {
    get url() { return `https://127.0.0.1:${port}`; },
    token,
    caPem: pki.trustBundlePem,
    requests,
    writeKubeconfig(dir: string, o: { token?: string; namespace?: string } = {}) {
      const file = join(dir, 'kubeconfig');
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(pki.trustBundlePem).toString('base64') } }],
        users: [{ name: 'fake', user: { token: o.token ?? token } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', ...(o.namespace ? { namespace: o.namespace } : {}) } }],
        'current-context': 'fake',
      };
      writeFileSync(file, JSON.stringify(config, null, 2));
      return file;
    },
    apply(obj: KubeObject) {
      const info = infoOf(obj.apiVersion ?? '', obj.kind ?? '');
      const existing = objects.get(keyOf(info, obj.metadata.namespace ?? null, obj.metadata.name));
      return withType(info, store(info, obj, existing));
    },
    remove(apiVersion: string, kind: string, namespace: string | null, name: string) {
      const info = infoOf(apiVersion, kind);
      const key = keyOf(info, namespace, name);
      const existing = objects.get(key);
      if (!existing) return false;
      objects.delete(key);
      const gone = clone(existing);
      gone.metadata.resourceVersion = String(++rv);
      record('DELETED', info, gone);
      return true;
    },
    get(apiVersion: string, kind: string, namespace: string | null, name: string) {
      const o = objects.get(keyOf(infoOf(apiVersion, kind), namespace, name));
      return o ? withType(infoOf(apiVersion, kind), o) : undefined;
    },
    resourceVersion: () => String(rv),
    watchCount: (plural?: string) => [...watches].filter((w) => plural === undefined || w.info.plural === plural).length,
    async waitForWatches(n: number, plural?: string) {
      while (emitter.watchCount(plural) < n) await once(emitter, 'watch');
    },
    endWatches() {
      for (const w of watches) w.res.end();
    },
    compact() {
      compactedRv = rv;
      events = [];
    },
    bookmark() {
      for (const w of watches) {
        if (w.bookmarks) writeEvent(w, 'BOOKMARK', { kind: w.info.kind, apiVersion: apiVersionOf(w.info), metadata: { resourceVersion: String(rv) } });
      }
    },
    forbid(verb: string, resource: string) { forbidden.add(`${verb} ${resource}`); },
    allow(verb: string, resource: string) { forbidden.delete(`${verb} ${resource}`); },
    stop,
    start: listen,
    close: stop,
  });
  return emitter;
}
