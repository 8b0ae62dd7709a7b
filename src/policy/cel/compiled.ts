/**
 * The contract between the CEL layer (`cel/`) and the policy compiler/engine: what a type-checked,
 * bounded expression exposes. Produced once at load, evaluated many times.
 */
import type { ATTRIBUTE_GROUPS, IndexKeyKind } from '../attributes.ts';
import { INDEXED } from '../attribute-tables.ts';
import type { ExpressionSource } from '../model.ts';

export type { IndexKeyKind } from '../attributes.ts';

/**
 * A constraint an expression implies when it is true, extracted from a top-level conjunct (or an
 * `||` of same-kind terms on one attribute). Used to index rules so decision cost does not grow
 * with the number of keyed rules. Kinds (`kind` absent means `equals`, the original shape):
 * - `equals`: `attribute` equals one of `values` — `source.principal == "spiffe://..."`,
 *   `destination.port in [80, 443]`, `destination.host.globMatch("db")`;
 * - `cidr`: the address in `attribute` (source.ip / destination.ip) lies in one of the CIDR
 *   literals `values` — `cidr("10.0.0.0/8").containsIP(source.ip)`, `...containsIP(ip(source.ip))`;
 * - `prefix` / `suffix`: the string `attribute` starts / ends with one of `values` —
 *   `source.principal.startsWith("spiffe://td/ns/prod/")`, `destination.host.endsWith(".svc")`,
 *   `x.globMatch("p*")`, `x.globMatch("*s")`. Never holds an empty literal (it proves nothing).
 */
export interface IndexKey {
  /** Absent for `equals`, so equality keys keep the shape `{attribute, values}`. */
  readonly kind?: IndexKeyKind;
  /** Dotted attribute path, one of INDEXABLE_ATTRIBUTES, admitting the key's kind (INDEX_KINDS). */
  attribute: IndexableAttribute;
  /** Literal values (ports as numbers, everything else as strings; CIDR blocks as written). */
  values: readonly (string | number)[];
  /**
   * `cidr` only: true when an empty attribute makes the conjunct an error rather than false
   * (`ip("")` throws, while `containsIP("")` is false), so `""` cannot rule the entry out.
   */
  readonly emptyIsError?: boolean;
}

/** The attributes admitting a kind of key, best-ranked first (the catalogue's `index`, ../attributes.ts). */
function indexedFor(kinds: readonly IndexKeyKind[]): readonly IndexableAttribute[] {
  return Object.freeze(INDEXED.filter((i) => i.kinds.some((k) => kinds.includes(k))).map((i) => i.attribute.path as IndexableAttribute));
}

/** Attributes holding an address, for `cidr` keys. */
export const CIDR_ATTRIBUTES = indexedFor(['cidr']);
/** String attributes, for `prefix` / `suffix` keys. */
export const STRING_ATTRIBUTES = indexedFor(['prefix', 'suffix']);

/** The kinds of key each indexable attribute admits. */
export const INDEX_KINDS: ReadonlyMap<string, ReadonlySet<IndexKeyKind>> = new Map(INDEXED.map((i) => [i.attribute.path, new Set(i.kinds)]));

/** The kind of a key (`equals` when absent). */
export function keyKind(k: IndexKey): IndexKeyKind {
  return k.kind ?? 'equals';
}

/** Every attribute the index may key on, best-ranked first: on a tie the index files an entry under the first. */
export const INDEXABLE_ATTRIBUTES: readonly IndexableAttribute[] = Object.freeze(INDEXED.map((i) => i.attribute.path as IndexableAttribute));

type Groups = typeof ATTRIBUTE_GROUPS;
/** The path of an attribute the catalogue lets the index key on, e.g. `source.principal`. */
export type IndexableAttribute = {
  [G in keyof Groups]: { [A in keyof Groups[G]['attributes']]: Groups[G]['attributes'][A] extends { readonly index: object } ? `${G}.${A & string}` : never }[keyof Groups[G]['attributes']];
}[keyof Groups];

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
  /** Constraints (equality, CIDR, prefix, suffix) implied when the expression is true; empty when none can be proven. */
  readonly indexKeys: readonly IndexKey[];
  /** True when the expression is the literal `true` (a catch-all; used by lint). */
  readonly isConstantTrue: boolean;
  /** True when the expression is the literal `false` (can never match; used by lint). */
  readonly isConstantFalse: boolean;
}
