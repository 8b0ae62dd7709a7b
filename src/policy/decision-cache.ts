/**
 * Memoises decisions. A decision is a pure function of the snapshot, the defaultAction and the
 * attributes the snapshot's expressions read, so the key is exactly those: snapshot version,
 * defaultAction, and the value of every attribute in `snapshot.reads`. A new snapshot has a new
 * version, so a swap invalidates every entry (the cache also drops them on first sight of it).
 *
 * The cache turns itself off for a snapshot that reads an attribute that is different for (nearly)
 * every tunnel: a key containing it would never be hit again, and every miss would pay for the key
 * and evict a useful entry. Those attributes are listed in UNCACHEABLE with the reason.
 */
import { LRUCache } from 'lru-cache';
import type { DecisionContext } from './context.ts';
import type { Decision, DefaultAction } from './decision.ts';
import { decide, type DecideOptions } from './engine.ts';
import type { PolicySnapshot } from './snapshot.ts';

/** Attributes that disable the cache, and why. */
export const UNCACHEABLE: Readonly<Record<string, string>> = Object.freeze({
  now: 'reads `now`: the decision time differs for every tunnel',
  'connection.id': 'reads `connection.id`: unique per HTTP/2 connection',
  'source.port': 'reads `source.port`: an ephemeral port, unique per client connection',
  'request.traceId': 'reads `request.traceId`: unique per request',
  'request.headers': 'reads the whole `request.headers` map (not a constant key): the key would hold every header, including per-request ones such as traceparent',
  'request.baggage': 'reads the whole `request.baggage` map (not a constant key): it carries per-request members',
});

type Extractor = (ctx: DecisionContext) => string;

/** Attributes the key can hold, as string extractors. */
const EXTRACTORS: Readonly<Record<string, Extractor>> = {
  'source.principal': (c) => c.source.principal,
  // trustDomain/namespace/serviceAccount derive from the principal, but keying on them is cheap
  // and keeps the key correct for hand-built contexts.
  'source.trustDomain': (c) => c.source.trustDomain,
  'source.namespace': (c) => c.source.namespace,
  'source.serviceAccount': (c) => c.source.serviceAccount,
  'source.ip': (c) => c.source.ip,
  'destination.ip': (c) => c.destination.ip,
  'destination.host': (c) => c.destination.host,
  'destination.port': (c) => String(c.destination.port),
  'destination.authority': (c) => c.destination.authority,
  'connection.tlsVersion': (c) => c.connection.tlsVersion,
};

const HEADER_PREFIX = 'request.headers.';
const BAGGAGE_PREFIX = 'request.baggage.';
/** Stands for an absent map entry; a real value cannot collide (values are length-prefixed). */
const ABSENT = '\u0000';

/** How a snapshot is cached: the key recipe, or why it is not cached. */
export type CachePlan =
  | { enabled: true; attributes: readonly string[]; extract: readonly Extractor[] }
  | { enabled: false; reason: string };

/** Derives the key recipe from `snapshot.reads`. Variables are skipped: their own reads are in the set. */
export function cachePlan(snapshot: PolicySnapshot): CachePlan {
  const attributes: string[] = [];
  const extract: Extractor[] = [];
  for (const read of [...snapshot.reads].sort()) {
    if (read === 'variables' || read.startsWith('variables.')) continue;
    const why = UNCACHEABLE[read];
    if (why !== undefined) return { enabled: false, reason: why };
    const e = EXTRACTORS[read];
    if (e !== undefined) {
      attributes.push(read);
      extract.push(e);
      continue;
    }
    const map = read.startsWith(HEADER_PREFIX) ? 'headers' : read.startsWith(BAGGAGE_PREFIX) ? 'baggage' : null;
    if (map !== null) {
      const name = read.slice((map === 'headers' ? HEADER_PREFIX : BAGGAGE_PREFIX).length);
      attributes.push(read);
      extract.push((c) => c.request[map][name] ?? ABSENT);
      continue;
    }
    // A whole group (`source`) or an attribute this table does not know: no key can be proven complete.
    return { enabled: false, reason: `reads \`${read}\`, which the cache cannot key on` };
  }
  return { enabled: true, attributes, extract };
}

export interface DecisionCacheOptions {
  /** Maximum number of cached decisions (LRU). */
  max: number;
}

export interface DecisionCacheStats {
  hits: number;
  misses: number;
  /** Decisions taken without the cache because the snapshot reads an uncacheable attribute. */
  bypassed: number;
  size: number;
  /** Why the current snapshot is not cached, null when it is. */
  disabledReason: string | null;
}

/**
 * An LRU of decisions for the current snapshot. `decide()` returns the same Decision the engine
 * would (its `evalMicros` is this call's own time, hit or miss).
 */
export class DecisionCache {
  private readonly lru: LRUCache<string, Decision>;
  private readonly plans = new WeakMap<PolicySnapshot, CachePlan>();
  private version: number | undefined;
  private hits = 0;
  private misses = 0;
  private bypassed = 0;
  private lastReason: string | null = null;

  constructor(options: DecisionCacheOptions) {
    this.lru = new LRUCache({ max: options.max });
  }

  /** Decides through the cache. */
  decide(snapshot: PolicySnapshot, ctx: DecisionContext, options: DecideOptions): Decision {
    const start = options.clock?.();
    if (this.version !== snapshot.version) {
      // The swap: entries of the previous snapshot can never be hit again (the version is in the key).
      this.lru.clear();
      this.version = snapshot.version;
    }
    let plan = this.plans.get(snapshot);
    if (plan === undefined) {
      plan = cachePlan(snapshot);
      this.plans.set(snapshot, plan);
    }
    if (!plan.enabled) {
      this.bypassed++;
      this.lastReason = plan.reason;
      return decide(snapshot, ctx, options);
    }
    this.lastReason = null;
    const key = cacheKey(snapshot.version, options.defaultAction, plan.extract, ctx);
    const cached = this.lru.get(key);
    if (cached !== undefined) {
      this.hits++;
      const evalMicros = start === undefined ? 0 : Number(options.clock!() - start) / 1000;
      return { ...cached, evalMicros };
    }
    this.misses++;
    const d = freezeDecision(decide(snapshot, ctx, options));
    this.lru.set(key, d);
    return { ...d };
  }

  stats(): DecisionCacheStats {
    return { hits: this.hits, misses: this.misses, bypassed: this.bypassed, size: this.lru.size, disabledReason: this.lastReason };
  }

  clear(): void {
    this.lru.clear();
  }
}

/** Length-prefixed values: no separator can appear inside a value and shift the fields. */
export function cacheKey(
  version: number,
  defaultAction: DefaultAction,
  extract: readonly Extractor[],
  ctx: DecisionContext,
): string {
  let key = `${version}|${defaultAction}`;
  for (const e of extract) {
    const v = e(ctx);
    key += `|${v.length}:${v}`;
  }
  return key;
}

/**
 * A cached decision is handed out many times: freeze it (in place; it is fresh from `decide`) so no
 * caller can alter another's copy. Callers get a shallow copy of the top level.
 */
function freezeDecision(d: Decision): Decision {
  Object.freeze(d.audit);
  Object.freeze(d.evalErrors);
  if (d.dryRun !== null) {
    Object.freeze(d.dryRun.matches);
    Object.freeze(d.dryRun);
  }
  Object.freeze(d.snapshot);
  return Object.freeze(d);
}
