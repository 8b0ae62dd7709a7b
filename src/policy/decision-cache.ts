/**
 * Memoises decisions. A decision is a pure function of the snapshot, the defaultAction and the
 * attributes the snapshot's expressions read, so the key is exactly those: snapshot version,
 * defaultAction, and the value of every attribute in `snapshot.reads`. A new snapshot has a new
 * version, so a swap invalidates every entry (the cache also drops them on first sight of it).
 *
 * The cache turns itself off for a snapshot that reads an attribute that is different for (nearly)
 * every tunnel: a key containing it would never be hit again, and every miss would pay for the key
 * and evict a useful entry. The attribute catalogue (attributes.ts) says which, and why: those are
 * listed in UNCACHEABLE with the reason, the others have an extractor in EXTRACTORS.
 */
import { BoundedCache } from '../util/bounded-cache.ts';
import { ATTRIBUTES, compileReader, isMapFormat, type Attribute } from './attribute-tables.ts';
import type { DecisionContext } from './context.ts';
import type { Decision, DefaultAction } from './decision.ts';
import { decide, type DecideOptions } from './engine.ts';
import type { PolicySnapshot } from './snapshot.ts';

/** Attributes that disable the cache, and why. */
export const UNCACHEABLE: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(
    ATTRIBUTES.flatMap((a) => {
      const why = a.def.cache;
      if (why === true) return [];
      const what = isMapFormat(a.format) ? `the whole \`${a.path}\` map (not a constant key)` : `\`${a.path}\``;
      return [[a.path, `reads ${what}: ${why}`]];
    }),
  ),
);

type Extractor = (ctx: DecisionContext) => string;

/** Attributes the key can hold, as string extractors (generated: attribute-tables.ts). */
const EXTRACTORS: ReadonlyMap<string, Extractor> = new Map(
  ATTRIBUTES.filter((a) => a.def.cache === true).map((a) => [a.path, compileReader<DecisionContext, string>(a, { asString: true })]),
);

/** Map attributes by the prefix of their constant-key reads (`request.headers.`), with a reader of the whole map. */
const MAPS: readonly { prefix: string; read: (ctx: DecisionContext) => Readonly<Record<string, string>> }[] = ATTRIBUTES.filter((a: Attribute) =>
  isMapFormat(a.format),
).map((a) => ({ prefix: `${a.path}.`, read: compileReader(a) }));

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
    const e = EXTRACTORS.get(read);
    if (e !== undefined) {
      attributes.push(read);
      extract.push(e);
      continue;
    }
    const map = MAPS.find((m) => read.startsWith(m.prefix));
    if (map !== undefined) {
      const name = read.slice(map.prefix.length);
      const readMap = map.read;
      attributes.push(read);
      extract.push((c) => readMap(c)[name] ?? ABSENT);
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
  private readonly lru: BoundedCache<string, Decision>;
  private readonly plans = new WeakMap<PolicySnapshot, CachePlan>();
  private version: number | undefined;
  private hits = 0;
  private misses = 0;
  private bypassed = 0;
  private lastReason: string | null = null;

  constructor(options: DecisionCacheOptions) {
    this.lru = new BoundedCache(options.max);
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
