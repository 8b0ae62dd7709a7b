/**
 * The typed, validated form of policy documents (docs/design.md §3). The YAML front-end
 * (`documents.ts`) produces these frozen objects; the compiler turns them into a snapshot. Every
 * piece of user text carries where it came from, so a CEL error inside an expression can be
 * reported at the exact file:line:col.
 */
import type { ATTRIBUTE_GROUPS, FormatInput, TOP_LEVEL_ATTRIBUTES } from './attributes.ts';
import type { DefaultAction, PolicyAction, PolicyMode } from './decision.ts';

export const API_VERSION = 'waygate.dev/v1alpha1';

/** Where a YAML node sits: file, 1-based line/col of the node, and its field path. */
export interface Location {
  file: string;
  line: number;
  col: number;
  /** Field path in the document, e.g. `spec.rules[1].when`. */
  path: string;
}

/**
 * A CEL expression as written in YAML. `positionAt(i)` maps an offset inside `text` (as the CEL
 * parser reports it) back to the file, accounting for quoting, escapes and block scalars.
 */
export interface ExpressionSource {
  text: string;
  location: Location;
  positionAt(offset: number): { line: number; col: number };
}

export interface PolicyVariable {
  name: string;
  expression: ExpressionSource;
  location: Location;
}

export interface PolicyRule {
  name: string;
  when: ExpressionSource;
  /** Optional human text for operators (never sent to the peer: a deny never reveals its rule). */
  message?: string;
  location: Location;
}

export interface AuthorizationPolicy {
  kind: 'AuthorizationPolicy';
  name: string;
  action: PolicyAction;
  mode: PolicyMode;
  selector?: ExpressionSource;
  variables: readonly PolicyVariable[];
  rules: readonly PolicyRule[];
  location: Location;
  /** Index of the document in the whole policy set (files sorted by path, documents in order). */
  ordinal: number;
}

type Groups = typeof ATTRIBUTE_GROUPS;
type TopLevel = typeof TOP_LEVEL_ATTRIBUTES;
type InputOf<D> = D extends { readonly derive: object } ? never : D extends { readonly format: infer F extends keyof FormatInput } ? FormatInput[F] : never;
type InputGroup<A> = { -readonly [K in keyof A as InputOf<A[K]> extends never ? never : K]?: InputOf<A[K]> };

/**
 * Input of one policy test case, the attribute catalogue's groups (attributes.ts) without their
 * derived attributes; fields left out take their no-identity / empty value. `now` is an RFC 3339
 * timestamp and defaults to the Unix epoch so tests are deterministic.
 */
export type PolicyTestInput = { -readonly [G in keyof Groups]?: InputGroup<Groups[G]['attributes']> } & { -readonly [N in keyof TopLevel]?: InputOf<TopLevel[N]> };

export interface PolicyTestExpect {
  decision: 'allow' | 'deny';
  policy?: string | null;
  rule?: string | null;
  reason?: string;
  /** Optional: AUDIT rules expected to match, as `policy/rule`. */
  audit?: string[];
  /** Optional: expected dry-run verdict. */
  dryRun?: 'allow' | 'deny';
}

export interface PolicyTestCase {
  name: string;
  input: PolicyTestInput;
  expect: PolicyTestExpect;
  location: Location;
}

export interface PolicyTest {
  kind: 'PolicyTest';
  name: string;
  defaultAction?: DefaultAction;
  cases: readonly PolicyTestCase[];
  location: Location;
}

export type PolicyDocument = AuthorizationPolicy | PolicyTest;
