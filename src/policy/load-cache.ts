/**
 * What one policy load can reuse from the previous one, so a reload costs what changed rather
 * than the whole set (a 10,000-rule set is ~0.5 s of YAML parsing and CEL compiling on the
 * serving thread; an edit usually touches one file).
 *
 * Two levels, both keyed so that a hit returns exactly what a fresh parse or compile would:
 *   - a file's parsed documents, keyed by its path and text, parsed as if the file came first
 *     (ordinals run across files; the loader shifts a hit's ordinals to the file's place, so a
 *     file added in front does not make every later file a miss). Documents are deep-frozen, so
 *     sharing them between snapshots is safe;
 *   - an expression's compiled form, keyed by its ExpressionSource object (the same object only
 *     when its file was a parse hit), the environment it was checked in and the expected type.
 *     Only expressions checked in the shared base environment are kept: a policy with variables
 *     gets a fresh environment per load, so its expressions could never hit.
 *
 * Failed compiles are not kept (their messages name the current load's context).
 *
 * Memory: the parse level holds the files of the latest load that succeeded, i.e. of the snapshot
 * in force, and nothing else: a load commits its parses only when it produced a snapshot, and a
 * load that is rejected or stopped (a limit, a YAML error, a CEL error) drops what it parsed. So a
 * large set that was replaced, or one that was refused, is not kept alive by this cache (it would
 * double the gateway's policy memory). The compile level is a WeakMap on the sources, so it lets
 * go with the documents that hold them; it is also rebuilt per load like the parse level, because
 * V8 never shrinks a WeakMap's table when its entries die: after a 10,000-rule set was replaced,
 * the table alone kept 2 MiB (a gateway heap snapshot, bench/README.md "Reload under load").
 */
import type { Environment } from '@marcbachmann/cel-js';
import type { CompiledCelExpression } from './cel/compile-expression.ts';
import type { ParsedPolicyDocuments } from './documents.ts';
import type { ExpressionSource } from './model.ts';

interface ParsedEntry {
  text: string;
  result: ParsedPolicyDocuments;
}

interface CompiledEntry {
  env: Environment;
  expect: 'bool' | 'any';
  expr: CompiledCelExpression;
}

export class PolicyLoadCache {
  #parsed = new Map<string, ParsedEntry>();
  #next: Map<string, ParsedEntry> | null = null;
  #compiled = new WeakMap<ExpressionSource, CompiledEntry>();
  #nextCompiled: WeakMap<ExpressionSource, CompiledEntry> | null = null;
  /** Hits and misses of the latest load, for logs and tests. */
  readonly stats = { files: { hits: 0, misses: 0 }, expressions: { hits: 0, misses: 0 } };

  /** Starts a load: files not seen again before `commit()` are forgotten. */
  begin(): void {
    this.#next = new Map();
    this.#nextCompiled = new WeakMap();
    this.stats.files.hits = this.stats.files.misses = 0;
    this.stats.expressions.hits = this.stats.expressions.misses = 0;
  }

  /** Ends a load that produced a snapshot: from now on the cache holds exactly its files. */
  commit(): void {
    if (this.#next !== null) this.#parsed = this.#next;
    if (this.#nextCompiled !== null) this.#compiled = this.#nextCompiled;
    this.#next = null;
    this.#nextCompiled = null;
  }

  /** Ends a load that was rejected or stopped: its parses are dropped, the previous entries stay. */
  abort(): void {
    this.#next = null;
    this.#nextCompiled = null;
  }

  /** How many files' parses the cache holds (the latest committed load's), for tests. */
  get fileCount(): number {
    return this.#parsed.size;
  }

  /** The parse of `path` with this text (made with first ordinal 0), if the previous load had it. */
  lookup(path: string, text: string): ParsedPolicyDocuments | undefined {
    const hit = this.#parsed.get(path);
    if (hit !== undefined && hit.text === text) {
      this.stats.files.hits++;
      this.#next?.set(path, hit);
      return hit.result;
    }
    this.stats.files.misses++;
    return undefined;
  }

  /** Keeps this load's parse of `path` (first ordinal 0), for the next load if this one commits. */
  keep(path: string, text: string, result: ParsedPolicyDocuments): void {
    this.#next?.set(path, { text, result });
  }

  /** A compiled expression for this source, environment and expected type, if one was kept. */
  compiled(source: ExpressionSource, env: Environment, expect: 'bool' | 'any'): CompiledCelExpression | undefined {
    const e = this.#nextCompiled?.get(source) ?? this.#compiled.get(source);
    if (e !== undefined && e.env === env && e.expect === expect) {
      this.stats.expressions.hits++;
      this.#nextCompiled?.set(source, e);
      return e.expr;
    }
    this.stats.expressions.misses++;
    return undefined;
  }

  /** Keeps a successful compile (callers pass only base-environment expressions; see above). */
  remember(source: ExpressionSource, env: Environment, expect: 'bool' | 'any', expr: CompiledCelExpression): void {
    (this.#nextCompiled ?? this.#compiled).set(source, { env, expect, expr });
  }
}
