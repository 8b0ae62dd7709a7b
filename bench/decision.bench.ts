/**
 * Decision benchmark: `decide()` time for 10 / 100 / 1,000 / 10,000 rules, against a
 * hand-written JS function doing the same checks with Map/Set lookups, in the same run.
 *
 *   node --import tsx bench/decision.bench.ts [--quick]
 *
 * Scenarios:
 *   principal       ALLOW rules `source.principal == "<id>"`, plus a few DENY rules
 *   port            ALLOW rules `destination.port == <p> && source.namespace == "<ns>"`
 *   mix-indexable   principal-keyed, with 10% rules the index keys by CIDR, prefix or suffix
 *                   (`cidr("100.x.y.0/24").containsIP(source.ip)`, `source.principal.startsWith(..)`,
 *                   `source.principal.endsWith(..)`, `destination.host.globMatch("*.app<i>.example")`)
 *   mix-opaque      principal-keyed, with 10% rules the index can prove nothing about (a header
 *                   comparison, `source.serviceAccount.contains(..)`): those are evaluated on every
 *                   decision, so cost stays linear in the number of opaque rules — by design, and
 *                   the bench says so instead of hiding it.
 * Each runs with the decision cache off, on (hits: a working set of 256 contexts), and on with
 * every context new (misses: what a cache costs when it never pays). About 10% of the contexts
 * hit one of the 10% rules, so those rules are exercised, not only skipped.
 *
 * Timing: batches of decisions timed with hrtime; ns/op is batch time / batch size, and the table
 * shows the median (p50) and p90 over batches. Targets: p50 <= 2 µs at 1,000 rules,
 * <= 5 µs at 10,000.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { compileFromTexts } from '../src/policy/load.ts';
import { decide } from '../src/policy/engine.ts';
import { DecisionCache } from '../src/policy/decision-cache.ts';
import { contextFromInput } from '../src/policy/context-input.ts';
import type { DecisionContext } from '../src/policy/context.ts';
import type { PolicySnapshot } from '../src/policy/snapshot.ts';
import { describeIndex } from '../src/policy/rule-index.ts';
import { machineInfo } from './lib/proc.ts';
import { fmt, quantile, table } from './lib/stats.ts';
import { seededRandom as prng } from '../src/util/seeded-random.ts';

export interface DecisionBenchOptions {
  quick: boolean;
  /** Rule counts to measure (default 10, 100, 1,000, 10,000). */
  sizes?: readonly number[];
  /** Write bench/results/decision-<timestamp>.json (default true). */
  write?: boolean;
  /** Print the table (default false: the top-level runner prints `renderDecisionBench`). */
  print?: boolean;
}

export interface DecisionBenchRow {
  scenario: ScenarioName;
  rules: number;
  /** Rules the index could not key (scanned on every decision). */
  scannedRules: number;
  /** Most index lookups one decision makes (hash probes: attributes, CIDR prefix lengths, literal lengths). */
  indexProbes: number;
  compileMs: number;
  engineP50Ns: number;
  engineP90Ns: number;
  baselineP50Ns: number;
  /** engine p50 / baseline p50. */
  ratio: number;
  cacheHitP50Ns: number;
  cacheMissP50Ns: number;
  /** Fraction of the measured contexts that were allowed (sanity: the workload is not all-deny). */
  allowFraction: number;
  meetsTarget: boolean | null;
}

export interface DecisionBenchResult {
  machine: Record<string, unknown>;
  options: { quick: boolean; sizes: readonly number[] };
  rows: DecisionBenchRow[];
  /** What the rows mean, in words (printed under the table). */
  notes: string[];
  file?: string;
}

export type ScenarioName = 'principal' | 'port' | 'mix-indexable' | 'mix-opaque';

const TD = 'cluster.local';
const principalOf = (i: number): string => `spiffe://${TD}/ns/ns${i % 50}/sa/svc${i}`;

interface Scenario {
  yaml: string;
  /** The same checks as plain JS: what a hand-tuned implementation would cost. */
  baseline: (ctx: DecisionContext) => boolean;
  /** Contexts to decide: ~90% hit a rule, ~10% match none. */
  contexts: (n: number, rand: () => number) => DecisionContext[];
}

function policyDoc(name: string, action: string, rules: readonly [string, string][]): string {
  return JSON.stringify({
    apiVersion: 'waygate.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name },
    spec: { action, rules: rules.map(([n, when]) => ({ name: n, when })) },
  });
}

/** Splits rules into policies of at most 10 rules (a realistic shape: many small policies). */
function policies(prefix: string, action: string, rules: [string, string][]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rules.length; i += 10) out.push(policyDoc(`${prefix}-${i / 10}`, action, rules.slice(i, i + 10)));
  return out;
}

const DENIED = ['spiffe://cluster.local/ns/attacker/sa/a', 'spiffe://cluster.local/ns/attacker/sa/b'];

function principalScenario(n: number): Scenario {
  const rules: [string, string][] = [];
  for (let i = 0; i < n; i++) rules.push([`r${i}`, `source.principal == "${principalOf(i)}"`]);
  const docs = [
    policyDoc('deny-attacker', 'DENY', DENIED.map((p, i) => [`d${i}`, `source.principal == "${p}"`])),
    ...policies('allow', 'ALLOW', rules),
  ];
  const denied = new Set(DENIED);
  const allowed = new Set(rules.map((_, i) => principalOf(i)));
  return {
    yaml: docs.join('\n---\n'),
    baseline: (ctx) => !denied.has(ctx.source.principal) && allowed.has(ctx.source.principal),
    contexts: (count, rand) =>
      Array.from({ length: count }, () => {
        const i = Math.floor(rand() * n * 1.1); // ~10% beyond the last rule: no match
        return contextFromInput({ source: { principal: principalOf(i), ip: '10.0.0.5', port: 40000 }, destination: { ip: '10.0.1.7', port: 8080 } });
      }),
  };
}

function portScenario(n: number): Scenario {
  const rules: [string, string][] = [];
  const byPort = new Map<number, string>();
  for (let i = 0; i < n; i++) {
    rules.push([`r${i}`, `destination.port == ${10000 + i} && source.namespace == "ns${i % 50}"`]);
    byPort.set(10000 + i, `ns${i % 50}`);
  }
  return {
    yaml: policies('allow', 'ALLOW', rules).join('\n---\n'),
    baseline: (ctx) => byPort.get(ctx.destination.port) === ctx.source.namespace,
    contexts: (count, rand) =>
      Array.from({ length: count }, () => {
        const i = Math.floor(rand() * n * 1.1);
        return contextFromInput({ source: { principal: principalOf(i), ip: '10.0.0.5', port: 40000 }, destination: { ip: '10.0.1.7', port: 10000 + i } });
      }),
  };
}

/** A context: the principal-scenario defaults, overridden per shape. */
function ctxOf(i: number, over: { principal?: string; ip?: string; host?: string; headers?: Record<string, string> } = {}): DecisionContext {
  return contextFromInput({
    source: { principal: over.principal ?? principalOf(i), ip: over.ip ?? '10.0.0.5', port: 40000 },
    destination: over.host !== undefined
      ? { host: over.host, port: 8080, authority: `${over.host}:8080` }
      : { ip: '10.0.1.7', port: 8080 },
    ...(over.headers ? { request: { headers: over.headers } } : {}),
  });
}

/** Literal sets by length, matched by slicing once per length: what a hand-tuned prefix/suffix match does. */
class AffixSet {
  private readonly byLength = new Map<number, Set<string>>();
  constructor(private readonly suffix: boolean) {}
  add(lit: string): void {
    let set = this.byLength.get(lit.length);
    if (set === undefined) this.byLength.set(lit.length, (set = new Set()));
    set.add(lit);
  }
  matches(s: string): boolean {
    for (const [len, set] of this.byLength) {
      if (len <= s.length && set.has(this.suffix ? s.slice(s.length - len) : s.slice(0, len))) return true;
    }
    return false;
  }
}

/** 10% of the rules keyed by CIDR / prefix / suffix (one shape in four each), 90% by principal. */
function mixIndexableScenario(n: number): Scenario {
  const rules: [string, string][] = [];
  const allowed = new Set<string>();
  const nets = new Set<number>();
  const prefixes = new AffixSet(false);
  const suffixes = new AffixSet(true);
  const hostSuffixes = new AffixSet(true);
  const shape = (i: number): number => Math.floor(i / 10) % 4;
  for (let i = 0; i < n; i++) {
    if (i % 10 !== 9) {
      rules.push([`r${i}`, `source.principal == "${principalOf(i)}"`]);
      allowed.add(principalOf(i));
      continue;
    }
    switch (shape(i)) {
      case 0:
        rules.push([`r${i}`, `cidr("100.${(i >> 8) & 255}.${i & 255}.0/24").containsIP(source.ip)`]);
        nets.add(((100 << 16) | (((i >> 8) & 255) << 8) | (i & 255)) >>> 0);
        break;
      case 1:
        rules.push([`r${i}`, `source.principal.startsWith("spiffe://${TD}/ns/team${i}/")`]);
        prefixes.add(`spiffe://${TD}/ns/team${i}/`);
        break;
      case 2:
        rules.push([`r${i}`, `source.principal.endsWith("/sa/legacy${i}")`]);
        suffixes.add(`/sa/legacy${i}`);
        break;
      default:
        rules.push([`r${i}`, `destination.host.globMatch("*.app${i}.example")`]);
        hostSuffixes.add(`.app${i}.example`);
    }
  }
  const denied = new Set(DENIED);
  const docs = [
    policyDoc('deny-attacker', 'DENY', DENIED.map((p, i) => [`d${i}`, `source.principal == "${p}"`])),
    ...policies('allow', 'ALLOW', rules),
  ];
  return {
    yaml: docs.join('\n---\n'),
    baseline: (ctx) => {
      const p = ctx.source.principal;
      if (denied.has(p)) return false;
      if (allowed.has(p) || prefixes.matches(p) || suffixes.matches(p) || hostSuffixes.matches(ctx.destination.host)) return true;
      const o = ctx.source.ip.split('.');
      return o.length === 4 && nets.has(((Number(o[0]) << 16) | (Number(o[1]) << 8) | Number(o[2])) >>> 0);
    },
    contexts: (count, rand) =>
      Array.from({ length: count }, () => {
        const i = Math.floor(rand() * n * 1.1); // ~10% beyond the last rule: no match
        if (i >= n || i % 10 !== 9) return ctxOf(i);
        switch (shape(i)) {
          case 0: return ctxOf(i, { ip: `100.${(i >> 8) & 255}.${i & 255}.7` });
          case 1: return ctxOf(i, { principal: `spiffe://${TD}/ns/team${i}/sa/worker` });
          case 2: return ctxOf(i, { principal: `spiffe://${TD}/ns/ns${i % 50}/sa/legacy${i}` });
          default: return ctxOf(i, { host: `api.app${i}.example` });
        }
      }),
  };
}

/** 10% of the rules opaque to the index (header comparisons, `contains`), 90% by principal. */
function mixOpaqueScenario(n: number): Scenario {
  const rules: [string, string][] = [];
  const allowed = new Set<string>();
  const tenants = new Set<string>();
  const legacy = new Set<string>();
  for (let i = 0; i < n; i++) {
    if (i % 10 !== 9) {
      rules.push([`r${i}`, `source.principal == "${principalOf(i)}"`]);
      allowed.add(principalOf(i));
    } else if (i % 20 === 9) {
      rules.push([`r${i}`, `"x-tenant" in request.headers && request.headers["x-tenant"] == "t${i}"`]);
      tenants.add(`t${i}`);
    } else {
      rules.push([`r${i}`, `source.serviceAccount.contains("legacy-${i}-")`]);
      legacy.add(String(i));
    }
  }
  const denied = new Set(DENIED);
  const docs = [
    policyDoc('deny-attacker', 'DENY', DENIED.map((p, i) => [`d${i}`, `source.principal == "${p}"`])),
    ...policies('allow', 'ALLOW', rules),
  ];
  return {
    yaml: docs.join('\n---\n'),
    baseline: (ctx) => {
      const p = ctx.source.principal;
      if (denied.has(p)) return false;
      if (allowed.has(p)) return true;
      const t = ctx.request.headers['x-tenant'];
      if (t !== undefined && tenants.has(t)) return true;
      const m = /legacy-(\d+)-/.exec(ctx.source.serviceAccount);
      return m !== null && legacy.has(m[1]!);
    },
    contexts: (count, rand) =>
      Array.from({ length: count }, () => {
        const i = Math.floor(rand() * n * 1.1);
        if (i >= n || i % 10 !== 9) return ctxOf(i);
        return i % 20 === 9
          ? ctxOf(i, { headers: { 'x-tenant': `t${i}` } })
          : ctxOf(i, { principal: `spiffe://${TD}/ns/ns${i % 50}/sa/legacy-${i}-worker` });
      }),
  };
}

const SCENARIOS: Record<ScenarioName, (n: number) => Scenario> = {
  principal: principalScenario,
  port: portScenario,
  'mix-indexable': mixIndexableScenario,
  'mix-opaque': mixOpaqueScenario,
};


/** Times `op` over the contexts in batches; returns ns/op per batch. */
function measure(op: (ctx: DecisionContext) => unknown, contexts: readonly DecisionContext[], batches: number, batchSize: number): number[] {
  let sink = 0;
  // Warm-up: let the JIT settle on this call site.
  for (let i = 0; i < batchSize * 4; i++) sink += op(contexts[i % contexts.length]!) ? 1 : 0;
  const out: number[] = [];
  let k = 0;
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batchSize; i++) {
      sink += op(contexts[k]!) ? 1 : 0;
      k = k + 1 === contexts.length ? 0 : k + 1;
    }
    out.push(Number(process.hrtime.bigint() - t0) / batchSize);
  }
  if (sink === -1) console.log(sink); // keep `sink` observable so the loop is not optimised away
  return out;
}

/** Runs the benchmark; prints a table and writes JSON unless told not to. */
export async function runDecisionBench(opts: DecisionBenchOptions): Promise<DecisionBenchResult> {
  const sizes = opts.sizes ?? [10, 100, 1_000, 10_000];
  const batches = opts.quick ? 30 : 120;
  const batchSize = opts.quick ? 500 : 2_000;
  const rows: DecisionBenchRow[] = [];
  let version = 1;
  {
    // Warm the engine's call sites once, so the first measured scenario is not the JIT's warm-up.
    const s = principalScenario(100);
    const loaded = compileFromTexts([{ path: 'warmup.yaml', text: s.yaml }], 0);
    if (loaded.ok) {
      const contexts = s.contexts(256, prng(0));
      for (let i = 0; i < 50_000; i++) decide(loaded.snapshot, contexts[i % 256]!, { defaultAction: 'DENY' });
    }
  }
  for (const [name, make] of Object.entries(SCENARIOS) as [ScenarioName, (n: number) => Scenario][]) {
    for (const n of sizes) {
      const s = make(n);
      const t0 = process.hrtime.bigint();
      const loaded = compileFromTexts([{ path: `${name}-${n}.yaml`, text: s.yaml }], version++);
      const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (!loaded.ok) throw new Error(`${name}/${n}: ${loaded.diagnostics[0]?.message}`);
      const snapshot: PolicySnapshot = loaded.snapshot;
      const rand = prng(n);
      const contexts = s.contexts(256, rand);

      // The engine and the baseline must agree, or the comparison means nothing.
      let allowed = 0;
      for (const c of contexts) {
        const d = decide(snapshot, c, { defaultAction: 'DENY' });
        if (d.decision === 'allow') allowed++;
        if ((d.decision === 'allow') !== s.baseline(c)) throw new Error(`${name}/${n}: engine and baseline disagree on ${JSON.stringify(c)}`);
      }

      const engine = measure((c) => decide(snapshot, c, { defaultAction: 'DENY' }).decision === 'allow', contexts, batches, batchSize);
      const baseline = measure(s.baseline, contexts, batches, batchSize);
      const cache = new DecisionCache({ max: 10_000 });
      const hits = measure((c) => cache.decide(snapshot, c, { defaultAction: 'DENY' }).decision === 'allow', contexts, batches, batchSize);
      // Misses: every context new (a unique principal, hence namespace), so every call pays
      // key + lookup + decide + insert.
      const fresh = Array.from({ length: batches * batchSize + batchSize * 4 }, (_, i) =>
        contextFromInput({ source: { principal: `spiffe://${TD}/ns/m${i}/sa/miss${i}`, ip: '10.0.0.5', port: 1 }, destination: { ip: '10.0.1.7', port: 10000 + (i % n) } }),
      );
      const missCache = new DecisionCache({ max: 10_000 });
      const misses = measure((c) => missCache.decide(snapshot, c, { defaultAction: 'DENY' }).decision === 'allow', fresh, batches, batchSize);

      const p50 = quantile(engine, 0.5);
      const target = n === 1_000 ? 2_000 : n === 10_000 ? 5_000 : null;
      const described = [describeIndex(snapshot.index.deny), describeIndex(snapshot.index.allow)];
      const scanned = described.reduce((acc, d) => acc + d.scanned, 0);
      rows.push({
        scenario: name,
        rules: n,
        scannedRules: scanned,
        indexProbes: described.reduce((acc, d) => acc + d.probes, 0),
        compileMs,
        engineP50Ns: p50,
        engineP90Ns: quantile(engine, 0.9),
        baselineP50Ns: quantile(baseline, 0.5),
        ratio: p50 / quantile(baseline, 0.5),
        cacheHitP50Ns: quantile(hits, 0.5),
        cacheMissP50Ns: quantile(misses, 0.5),
        allowFraction: allowed / contexts.length,
        meetsTarget: target === null ? null : p50 <= target,
      });
    }
  }

  const result: DecisionBenchResult = { machine: machineInfo(), options: { quick: opts.quick, sizes }, rows, notes: notesFor(rows) };
  if (opts.print === true) console.log(renderDecisionBench(result));
  if (opts.write !== false) {
    const dir = new URL('./results/', import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `decision-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    result.file = file;
    if (opts.print === true) console.log(`\nwrote ${file}`);
  }
  return result;
}

/**
 * Plain-words reading of the rows: where the targets hold, and where cost is still linear in the
 * rules the index cannot key (per-opaque-rule cost estimated against the principal scenario).
 */
function notesFor(rows: readonly DecisionBenchRow[]): string[] {
  const notes: string[] = [];
  const at = (scenario: ScenarioName, n: number): DecisionBenchRow | undefined => rows.find((r) => r.scenario === scenario && r.rules === n);
  for (const scenario of Object.keys(SCENARIOS) as ScenarioName[]) {
    const targeted = rows.filter((r) => r.scenario === scenario && r.meetsTarget !== null);
    if (targeted.length === 0) continue;
    const missed = targeted.filter((r) => r.meetsTarget === false).map((r) => `${r.rules} rules (${fmt(r.engineP50Ns)} ns)`);
    notes.push(`${scenario}: ${missed.length === 0 ? 'targets met' : `targets MISSED at ${missed.join(', ')}`}.`);
  }
  const largest = Math.max(0, ...rows.filter((r) => r.scenario === 'mix-opaque').map((r) => r.rules));
  const opaque = at('mix-opaque', largest);
  const base = at('principal', largest);
  if (opaque !== undefined && base !== undefined && opaque.scannedRules > 0) {
    const perRule = (opaque.engineP50Ns - base.engineP50Ns) / opaque.scannedRules;
    notes.push(
      `mix-opaque: the ${opaque.scannedRules} of ${opaque.rules} rules the index cannot key are evaluated on every decision, ` +
        `about ${fmt(perRule)} ns each: decision cost stays linear in opaque rules (write them with an equality, CIDR, ` +
        `startsWith/endsWith or globMatch conjunct to make them indexable).`,
    );
  }
  return notes;
}

/** The result as an aligned table, one row per scenario and size, then the notes. */
export function renderDecisionBench(result: DecisionBenchResult): string {
  const t = table(
    ['scenario', 'rules', 'scanned', 'probes', 'compile ms', 'p50 ns/op', 'p90 ns/op', 'baseline ns', 'ratio', 'cache hit ns', 'cache miss ns', 'allowed', 'target'],
    result.rows.map((r) => [
      r.scenario, String(r.rules), String(r.scannedRules), String(r.indexProbes), fmt(r.compileMs), fmt(r.engineP50Ns), fmt(r.engineP90Ns),
      fmt(r.baselineP50Ns), `x${fmt(r.ratio)}`, fmt(r.cacheHitP50Ns), fmt(r.cacheMissP50Ns),
      `${Math.round(r.allowFraction * 100)}%`, r.meetsTarget === null ? '' : r.meetsTarget ? 'ok' : 'MISSED',
    ]),
  );
  const notes = result.notes ?? [];
  return notes.length === 0 ? t : `${t}\n\n${notes.map((n) => `note: ${n}`).join('\n')}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runDecisionBench({ quick: process.argv.includes('--quick'), print: true });
}
