/**
 * The gateway's plain-HTTP side ports, numbered as Istio's so operators recognise them (docs/design.md §5):
 *
 * - 15021 `GET /healthz/ready` - readiness for the kubelet and load balancers.
 * - 15020 `GET /metrics` (also `/stats/prometheus`, Istio's merged-metrics path) - Prometheus text.
 * - 15000 admin, loopback only - `GET /debug/config`, `GET /debug/policy`, `GET /debug/connections`,
 *   `POST /debug/explain`, `POST /debug/reload`, `POST /logging?level=`, `POST /quitquitquit`.
 *
 * These are separate listeners from HBONE (15008): the HBONE policy never applies to them and a
 * tunnel can never reach them (the data plane refuses self-calls to the gateway's own ports).
 * The admin API changes state, so it binds only to a loopback address (checked here as well as in
 * the config) and additionally refuses any request whose peer is not loopback.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WaygateError } from '../errors.ts';
import { formatHostPort, isLoopbackHost, parseHostPort } from '../config/address.ts';
import { LOG_LEVELS, type LogLevel } from '../config/schema.ts';
import type { ReadinessState } from './readiness.ts';

/** What the admin endpoints read and do; the gateway composition root implements it. */
export interface AdminHandlers {
  readiness(): ReadinessState;
  /** Prometheus text exposition (aggregated across workers in workers mode). */
  metrics(): Promise<string>;
  metricsContentType: string;
  /** Effective config; never certificate or key contents. */
  config(): unknown | Promise<unknown>;
  policy(): unknown | Promise<unknown>;
  connections(): unknown | Promise<unknown>;
  /** Explains a decision for a PolicyTestInput-shaped body; throws WaygateError for bad input. */
  explain(input: unknown): unknown | Promise<unknown>;
  reload(): Promise<unknown>;
  setLogLevel(level: LogLevel): { previous: LogLevel; level: LogLevel };
  /** Starts a drain (as SIGTERM does); the response is sent before the drain begins. */
  quit(): void;
}

export interface AdminServerOptions {
  readyAddress: string;
  metricsAddress: string;
  adminAddress: string;
  handlers: AdminHandlers;
  /** Called with unexpected handler errors (answered 500). */
  onError?: (err: unknown, route: string) => void;
}

export interface AdminServers {
  /** Bound addresses as `host:port` (port 0 resolved). */
  readonly addresses: { ready: string; metrics: string; admin: string };
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;

function send(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value, null, 2) + '\n', 'application/json');
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new WaygateError('WG_USAGE', `request body over ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

type Route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> | void;

function readyRoute(h: AdminHandlers): Route {
  return (_req, res) => {
    const s = h.readiness();
    // Body is for humans and `kubectl describe`; probes read only the status.
    send(res, s.ready ? 200 : 503, s.ready ? 'ready\n' : `not ready: ${s.reasons.join(', ')}\n`);
  };
}

function metricsRoute(h: AdminHandlers): Route {
  return async (_req, res) => send(res, 200, await h.metrics(), h.metricsContentType);
}

function adminRoutes(h: AdminHandlers): Map<string, { method: 'GET' | 'POST'; route: Route }> {
  const routes = new Map<string, { method: 'GET' | 'POST'; route: Route }>();
  routes.set('/', {
    method: 'GET',
    route: (_req, res) => send(res, 200, [...routes.entries()].map(([p, r]) => `${r.method} ${p}`).join('\n') + '\n'),
  });
  routes.set('/healthz/ready', { method: 'GET', route: readyRoute(h) });
  routes.set('/metrics', { method: 'GET', route: metricsRoute(h) });
  routes.set('/debug/config', { method: 'GET', route: async (_q, res) => sendJson(res, 200, await h.config()) });
  routes.set('/debug/policy', { method: 'GET', route: async (_q, res) => sendJson(res, 200, await h.policy()) });
  routes.set('/debug/connections', { method: 'GET', route: async (_q, res) => sendJson(res, 200, await h.connections()) });
  routes.set('/debug/explain', {
    method: 'POST',
    route: async (req, res) => {
      const text = await readBody(req);
      let input: unknown;
      try {
        input = text.trim() === '' ? {} : JSON.parse(text);
      } catch (err) {
        sendJson(res, 400, { error: `body is not JSON: ${(err as Error).message}` });
        return;
      }
      sendJson(res, 200, await h.explain(input));
    },
  });
  routes.set('/debug/reload', { method: 'POST', route: async (_q, res) => sendJson(res, 200, await h.reload()) });
  routes.set('/logging', {
    method: 'POST',
    route: (_req, res, url) => {
      const level = url.searchParams.get('level');
      if (!level || !LOG_LEVELS.includes(level as LogLevel)) {
        sendJson(res, 400, { error: `level must be one of ${LOG_LEVELS.join(', ')}` });
        return;
      }
      sendJson(res, 200, h.setLogLevel(level as LogLevel));
    },
  });
  routes.set('/quitquitquit', {
    method: 'POST',
    route: (_req, res) => {
      send(res, 200, 'draining\n');
      // After the answer is on its way: the drain closes this server too.
      res.on('finish', () => h.quit());
    },
  });
  return routes;
}

function makeServer(
  routes: Map<string, { method: 'GET' | 'POST'; route: Route }>,
  opts: { loopbackPeersOnly: boolean; onError?: (err: unknown, route: string) => void },
): http.Server {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    if (opts.loopbackPeersOnly && !isLoopbackHost(req.socket.remoteAddress ?? '')) {
      send(res, 403, 'admin API is loopback only\n');
      return;
    }
    const entry = routes.get(url.pathname);
    if (!entry) {
      send(res, 404, 'not found\n');
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== entry.method) {
      res.setHeader('allow', entry.method);
      send(res, 405, `use ${entry.method}\n`);
      return;
    }
    try {
      await entry.route(req, res, url);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof WaygateError && (err.code === 'WG_USAGE' || err.code === 'WG_CONFIG' || err.code.startsWith('WG_POLICY'))) {
        sendJson(res, 400, { error: err.message, code: err.code });
        return;
      }
      opts.onError?.(err, url.pathname);
      sendJson(res, 500, { error: (err as Error)?.message ?? String(err) });
    }
  });
  // Probes and scrapes are short; never let a slow client pin a socket.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

function listen(server: http.Server, address: string): Promise<string> {
  const hp = parseHostPort(address);
  if (!hp.ok) return Promise.reject(new WaygateError('WG_CONFIG', hp.message));
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(new WaygateError('WG_CONFIG', `cannot listen on ${address}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host: hp.value.host, port: hp.value.port }, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve(formatHostPort(a.address, a.port));
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * Starts the three listeners. When the ready and metrics addresses are the same fixed `host:port`,
 * one listener serves both paths (as Istio's 15020 does).
 */
export async function startAdminServers(opts: AdminServerOptions): Promise<AdminServers> {
  const adminHp = parseHostPort(opts.adminAddress);
  if (!adminHp.ok || !isLoopbackHost(adminHp.value.host)) {
    throw new WaygateError('WG_CONFIG', `admin address ${opts.adminAddress} is not loopback: the admin API must never be reachable from the network`);
  }
  const h = opts.handlers;
  const onError = opts.onError;
  const servers: http.Server[] = [];
  try {
    const readyOnly = new Map([['/healthz/ready', { method: 'GET' as const, route: readyRoute(h) }]]);
    const metricsOnly = new Map([
      ['/metrics', { method: 'GET' as const, route: metricsRoute(h) }],
      ['/stats/prometheus', { method: 'GET' as const, route: metricsRoute(h) }],
    ]);
    const shared = opts.readyAddress === opts.metricsAddress && !opts.readyAddress.endsWith(':0');
    let ready: string;
    let metrics: string;
    if (shared) {
      const s = makeServer(new Map([...readyOnly, ...metricsOnly]), { loopbackPeersOnly: false, onError });
      servers.push(s);
      ready = metrics = await listen(s, opts.readyAddress);
    } else {
      const rs = makeServer(readyOnly, { loopbackPeersOnly: false, onError });
      servers.push(rs);
      ready = await listen(rs, opts.readyAddress);
      const ms = makeServer(metricsOnly, { loopbackPeersOnly: false, onError });
      servers.push(ms);
      metrics = await listen(ms, opts.metricsAddress);
    }
    const as = makeServer(adminRoutes(h), { loopbackPeersOnly: true, onError });
    servers.push(as);
    const admin = await listen(as, opts.adminAddress);
    return {
      addresses: { ready, metrics, admin },
      close: async () => {
        await Promise.all(servers.map(closeServer));
      },
    };
  } catch (err) {
    await Promise.all(servers.map((s) => (s.listening ? closeServer(s) : Promise.resolve())));
    throw err;
  }
}
