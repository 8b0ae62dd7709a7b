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
 * A file's parse is kept whether or not it had errors: its documents and diagnostics depend only
 * on its path and text. Failed compiles are not kept (their messages name the current load's
 * context). The parse level keeps only the files of the latest load; the compile level is a
 * WeakMap on the sources, so it lets go with the documents that hold them.
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
  readonly #compiled = new WeakMap<ExpressionSource, CompiledEntry>();
  /** Hits and misses of the latest load, for logs and tests. */
  readonly stats = { files: { hits: 0, misses: 0 }, expressions: { hits: 0, misses: 0 } };

  /** Starts a load: files not seen again before `commit()` are forgotten. */
  begin(): void {
    this.#next = new Map();
    this.stats.files.hits = this.stats.files.misses = 0;
    this.stats.expressions.hits = this.stats.expressions.misses = 0;
  }

  /** Ends a load that parsed every file; a load that stopped early keeps the previous entries. */
  commit(): void {
    if (this.#next !== null) this.#parsed = this.#next;
    this.#next = null;
  }

  /** The parse of `path` with this text (first ordinal 0), or the result of `parse()`, remembered. */
  parsed(path: string, text: string, parse: () => ParsedPolicyDocuments): ParsedPolicyDocuments {
    const hit = this.#parsed.get(path);
    let entry: ParsedEntry;
    if (hit !== undefined && hit.text === text) {
      this.stats.files.hits++;
      entry = hit;
    } else {
      this.stats.files.misses++;
      entry = { text, result: parse() };
    }
    this.#next?.set(path, entry);
    return entry.result;
  }

  /** A compiled expression for this source, environment and expected type, if one was kept. */
  compiled(source: ExpressionSource, env: Environment, expect: 'bool' | 'any'): CompiledCelExpression | undefined {
    const e = this.#compiled.get(source);
    if (e !== undefined && e.env === env && e.expect === expect) {
      this.stats.expressions.hits++;
      return e.expr;
    }
    this.stats.expressions.misses++;
    return undefined;
  }

  /** Keeps a successful compile (callers pass only base-environment expressions; see above). */
  remember(source: ExpressionSource, env: Environment, expect: 'bool' | 'any', expr: CompiledCelExpression): void {
    this.#compiled.set(source, { env, expect, expr });
  }
}
