/**
 * The traffic mix: what each workload of the demo cluster tries, how often, and what the gateway
 * running the example policies (policies/) under the default config (defaultAction DENY, loopback
 * destinations only, no routes) must answer. Every reason code that configuration can produce is
 * reached by at least one scenario:
 *
 *   allowed                  frontend -> API, api/migrate -> database, prometheus -> metrics
 *   no_allow_match           a selected port, no rule for the caller (frontend -> database, ...)
 *   default_deny             a port no ALLOW policy selects (sandbox -> 6379)
 *   explicit_deny            deny-dev (dev namespace), deny-link-local (169.254.169.254)
 *   bad_request              malformed :authority, a GET instead of CONNECT (raw node:http2)
 *   destination_not_allowed  allowed by policy, but outside the allowed networks (10.0.1.7:8080,
 *                            a host:port authority without a route); the gateway never dials it
 *   upstream_failed          allowed by policy, loopback port with nothing listening (503)
 *   no_identity              a certificate without a SPIFFE URI SAN; a foreign trust domain's ID
 *   + AUDIT matches (database-audit on 5432) and dry-run matches (require-traceparent on 8080:
 *     untraced calls are would-be denies).
 *
 * `policy_changed`, `draining` (as a decision) and `eval_error` need a policy swap, a drain race and
 * a failing expression respectively; `default_allow` needs `--default-action ALLOW`. The runner's
 * held tunnels produce `draining` close records when the gateway is stopped under them.
 */
import type { ClientName } from './identities.ts';
import { seededRandom } from '../../src/util/seeded-random.ts';

export { seededRandom };

/** Where the scenarios point: the echo backends' host and the ports the example policies name. */
export interface Targets {
  /** Loopback address of the echo backends (allowed destination). */
  backendHost: string;
  apiPort: number;
  dbPort: number;
  metricsPort: number;
  /** A port on `backendHost` the policies allow (metrics-scrape: 15020) with nothing listening. */
  closedPort: number;
  /** A port on `backendHost` that no ALLOW policy selects. */
  unselectedPort: number;
  /** A routable address outside the allowed networks: the gateway must refuse it without dialing. */
  remoteIp: string;
}

export const DEFAULT_TARGETS: Omit<Targets, 'backendHost'> = {
  apiPort: 8080,
  dbPort: 5432,
  metricsPort: 9090,
  closedPort: 15020,
  unselectedPort: 6379,
  remoteIp: '10.0.1.7',
};

/** How the CONNECT carries ztunnel's informational headers. */
export type HeaderStyle =
  | 'ztunnel'          // baggage + forwarded + traceparent, as ztunnel sends them
  | 'ztunnel-untraced' // baggage + forwarded, no traceparent (the dry-run trial's would-be deny)
  | 'none';

/** What a scenario sends on the wire. */
export type Request =
  | {
    kind: 'tunnel';
    authority: (t: Targets) => string;
    headers: HeaderStyle;
    extra?: Record<string, string>;
    /** Reset the stream (RST_STREAM INTERNAL_ERROR) after sending part of the payload. */
    abortMidway?: boolean;
  }
  /** A raw node:http2 request the HBONE client helper would not send: not CONNECT, or bad :authority. */
  | { kind: 'raw'; method: 'CONNECT' | 'GET'; authority: (t: Targets) => string };

/** Payload moved through an allowed tunnel: the echo comes back byte for byte. */
export interface PayloadShape {
  minBytes: number;
  maxBytes: number;
}

export interface Scenario {
  name: string;
  client: ClientName;
  weight: number;
  request: Request;
  /** Expected `:status`; `'handshake'` when the TLS handshake itself must fail. */
  expectStatus: number | 'handshake';
  /** Expected audit `reason` (none for handshake failures: they leave no decision record). */
  expectReason: string | null;
  payload?: PayloadShape;
}

const api = (t: Targets): string => `${t.backendHost}:${t.apiPort}`;
const db = (t: Targets): string => `${t.backendHost}:${t.dbPort}`;
const metrics = (t: Targets): string => `${t.backendHost}:${t.metricsPort}`;

const KiB = 1024;

/** The mix. Weights are relative; most traffic is allowed, as in a healthy cluster. */
export const SCENARIOS: readonly Scenario[] = [
  // --- allowed ------------------------------------------------------------------------------
  {
    name: 'frontend calls the API (traced)', client: 'frontend', weight: 30,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 200, maxBytes: 256 * KiB },
  },
  {
    name: 'frontend calls the API without a traceparent (dry-run would deny)', client: 'frontend', weight: 8,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel-untraced' },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 200, maxBytes: 32 * KiB },
  },
  {
    name: 'api queries the database (audited)', client: 'api', weight: 14,
    request: { kind: 'tunnel', authority: db, headers: 'ztunnel' },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 100, maxBytes: 64 * KiB },
  },
  {
    name: 'tagged migration job connects to the database', client: 'migrate', weight: 3,
    request: { kind: 'tunnel', authority: db, headers: 'ztunnel', extra: { 'x-tenant': 'acme', 'x-api-key': 'demo-key-not-a-secret' } },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 4 * KiB, maxBytes: 128 * KiB },
  },
  {
    name: 'prometheus scrapes application metrics', client: 'prometheus', weight: 10,
    request: { kind: 'tunnel', authority: metrics, headers: 'ztunnel' },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 80, maxBytes: 16 * KiB },
  },
  {
    name: 'frontend gives up mid-call (client reset)', client: 'frontend', weight: 2,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel', abortMidway: true },
    expectStatus: 200, expectReason: 'allowed', payload: { minBytes: 16 * KiB, maxBytes: 64 * KiB },
  },
  // --- denied by policy ---------------------------------------------------------------------
  {
    name: 'frontend tries the database directly (audited)', client: 'frontend', weight: 3,
    request: { kind: 'tunnel', authority: db, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'no_allow_match',
  },
  {
    name: 'untagged migration job', client: 'migrate', weight: 2,
    request: { kind: 'tunnel', authority: db, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'no_allow_match',
  },
  {
    name: 'prometheus tries the API', client: 'prometheus', weight: 2,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'no_allow_match',
  },
  {
    name: 'sandbox notebook tries the API', client: 'sandbox', weight: 3,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'no_allow_match',
  },
  {
    name: 'sandbox notebook tries redis (no policy selects the port)', client: 'sandbox', weight: 3,
    request: { kind: 'tunnel', authority: (t) => `${t.backendHost}:${t.unselectedPort}`, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'default_deny',
  },
  {
    name: 'frontend on a port no policy selects', client: 'frontend', weight: 2,
    request: { kind: 'tunnel', authority: (t) => `${t.backendHost}:3000`, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'default_deny',
  },
  {
    name: 'dev web calls the prod API', client: 'dev-web', weight: 5,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'explicit_deny',
  },
  {
    name: 'dev web scrapes metrics', client: 'dev-web', weight: 2,
    request: { kind: 'tunnel', authority: metrics, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'explicit_deny',
  },
  {
    name: 'frontend reaches for the cloud metadata endpoint', client: 'frontend', weight: 2,
    request: { kind: 'tunnel', authority: () => '169.254.169.254:8080', headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'explicit_deny',
  },
  // --- refused by the transport ---------------------------------------------------------------
  {
    name: 'frontend calls a pod address outside the allowed networks', client: 'frontend', weight: 3,
    request: { kind: 'tunnel', authority: (t) => `${t.remoteIp}:${t.apiPort}`, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'destination_not_allowed',
  },
  {
    name: 'frontend uses a service name without a route', client: 'frontend', weight: 2,
    request: { kind: 'tunnel', authority: (t) => `api.prod.svc.cluster.local:${t.apiPort}`, headers: 'ztunnel' },
    // No upstream for the name: 503 like ztunnel's "no upstream", not a policy-like refusal.
    expectStatus: 503, expectReason: 'upstream_failed',
  },
  {
    name: 'prometheus scrapes a port with nothing listening', client: 'prometheus', weight: 3,
    request: { kind: 'tunnel', authority: (t) => `${t.backendHost}:${t.closedPort}`, headers: 'ztunnel' },
    expectStatus: 503, expectReason: 'upstream_failed',
  },
  {
    name: 'CONNECT without a port in :authority', client: 'frontend', weight: 1,
    request: { kind: 'raw', method: 'CONNECT', authority: () => 'api.prod' },
    expectStatus: 400, expectReason: 'bad_request',
  },
  {
    name: 'CONNECT to port 0', client: 'api', weight: 1,
    request: { kind: 'raw', method: 'CONNECT', authority: (t) => `${t.backendHost}:0` },
    expectStatus: 400, expectReason: 'bad_request',
  },
  {
    name: 'plain GET on the HBONE port', client: 'prometheus', weight: 1,
    request: { kind: 'raw', method: 'GET', authority: metrics },
    expectStatus: 400, expectReason: 'bad_request',
  },
  {
    name: 'legacy cron job without a SPIFFE ID (CN only)', client: 'no-spiffe', weight: 2,
    request: { kind: 'tunnel', authority: api, headers: 'none' },
    expectStatus: 401, expectReason: 'no_identity',
  },
  {
    name: 'partner frontend from a foreign trust domain', client: 'partner', weight: 2,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 401, expectReason: 'no_identity',
  },
  {
    name: 'client of another CA fails the TLS handshake', client: 'foreign-ca', weight: 1,
    request: { kind: 'tunnel', authority: api, headers: 'ztunnel' },
    expectStatus: 'handshake', expectReason: null,
  },
];


/**
 * Picks `count` scenarios by weight, but first lists every scenario once, so even a short run
 * reaches every reason code (the audit review tests and the sample rely on that).
 */
export function planMix(count: number, random: () => number, scenarios: readonly Scenario[] = SCENARIOS): Scenario[] {
  const plan: Scenario[] = [...scenarios].slice(0, Math.max(count, 0));
  const total = scenarios.reduce((s, x) => s + x.weight, 0);
  while (plan.length < count) {
    let r = random() * total;
    let pick = scenarios[scenarios.length - 1]!;
    for (const s of scenarios) {
      r -= s.weight;
      if (r < 0) {
        pick = s;
        break;
      }
    }
    plan.push(pick);
  }
  // Fisher-Yates, so the "every scenario once" prefix is spread over the run.
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }
  return plan;
}

/** Lower-case hex of `bytes` random bytes, never all zero (W3C Trace Context §3.2.2.3). */
export function seededHex(random: () => number, bytes: number): string {
  for (;;) {
    let s = '';
    for (let i = 0; i < bytes; i++) s += Math.floor(random() * 256).toString(16).padStart(2, '0');
    if (!/^0+$/.test(s)) return s;
  }
}

/** A payload size between min and max, skewed towards small (most RPCs are small). */
export function payloadSize(shape: PayloadShape, random: () => number): number {
  const u = random() ** 3;
  return Math.round(shape.minBytes + u * (shape.maxBytes - shape.minBytes));
}
