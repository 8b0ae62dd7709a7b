/**
 * The typed, validated form of policy documents (DESIGN §3). The YAML front-end
 * (`documents.ts`) produces these frozen objects; the compiler turns them into a snapshot. Every
 * piece of user text carries where it came from, so a CEL error inside an expression can be
 * reported at the exact file:line:col.
 */
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

/** Input of one policy test case; fields left out take their no-identity / empty value. */
export interface PolicyTestInput {
  source?: { principal?: string; ip?: string; port?: number };
  destination?: { ip?: string; host?: string; port?: number; authority?: string };
  request?: { headers?: Record<string, string>; baggage?: Record<string, string>; traceId?: string };
  connection?: { id?: string; tlsVersion?: string };
  /** RFC 3339 timestamp; defaults to the Unix epoch so tests are deterministic. */
  now?: string;
}

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
