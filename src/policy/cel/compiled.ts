/**
 * The contract between the CEL layer (`cel/`) and the policy compiler/engine: what a type-checked,
 * bounded expression exposes. Produced once at load, evaluated many times.
 */
import type { ExpressionSource } from '../model.ts';

/**
 * An equality constraint an expression implies when it is true: the expression can only be true
 * when `attribute` equals one of `values`. Extracted from top-level conjuncts such as
 * `source.principal == "spiffe://..."`, `destination.port in [80, 443]`. Used to index rules so
 * decision cost does not grow with the number of equality-keyed rules.
 */
export interface IndexKey {
  /** Dotted attribute path, one of INDEXABLE_ATTRIBUTES. */
  attribute: IndexableAttribute;
  /** Literal values (ports as numbers, everything else as strings). */
  values: readonly (string | number)[];
}

export const INDEXABLE_ATTRIBUTES = [
  'source.principal',
  'source.namespace',
  'source.serviceAccount',
  'source.trustDomain',
  'source.ip',
  'destination.port',
  'destination.ip',
  'destination.host',
  'destination.authority',
] as const;
export type IndexableAttribute = (typeof INDEXABLE_ATTRIBUTES)[number];

/** The CEL activation built once per decision from a DecisionContext (ports as BigInt). */
export type Activation = Record<string, unknown>;

export interface CompiledExpression {
  readonly source: ExpressionSource;
  /** CEL result type from the checker, e.g. `bool`, `string`, `list<string>`. */
  readonly type: string;
  /** Evaluates against an activation. Throws on CEL runtime errors; callers wrap it (fail closed). */
  evaluate(activation: Activation): unknown;
  /**
   * Attribute paths the expression reads, e.g. `source.principal`, `request.headers`,
   * `request.headers.x-tenant` (a constant-key map lookup), `now`, `variables.prod`.
   * The decision cache keys on exactly these.
   */
  readonly reads: ReadonlySet<string>;
  /** Equality constraints implied when the expression is true; empty when none can be proven. */
  readonly indexKeys: readonly IndexKey[];
  /** True when the expression is the literal `true` (a catch-all; used by lint). */
  readonly isConstantTrue: boolean;
  /** True when the expression is the literal `false` (can never match; used by lint). */
  readonly isConstantFalse: boolean;
}
