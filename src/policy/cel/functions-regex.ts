/**
 * Linear-time regular expressions and Istio-style globs for CEL.
 *
 * CEL's built-in `matches()` is backed by JavaScript's backtracking RegExp in our engine (docs/design.md §8.1:
 * `^(a+)+$` on 28 characters takes over a second, RE2 syntax such as `(?i)` throws) and cannot be
 * overridden, so the compiler refuses it and policies use `matchesRE2()`: RE2 syntax and semantics
 * (the CEL spec's), run by re2js, whose automata guarantee time linear in the input.
 */
import { EvaluationError, type Environment } from '@marcbachmann/cel-js';
import { RE2JS } from 're2js';
import { BoundedCache } from '../../util/bounded-cache.ts';

// Literal patterns recur on every decision; bounded because a pattern may come from a variable.
const regexCache = new BoundedCache<string, RE2JS>(1024);

/** Compiles an RE2 pattern (cached), throwing RE2's syntax error for an invalid one. */
export function compileRe2(pattern: string): RE2JS {
  const hit = regexCache.get(pattern);
  if (hit !== undefined) return hit;
  return regexCache.set(pattern, RE2JS.compile(pattern));
}

/** Why `pattern` is not a valid RE2 pattern, or null when it is (used to validate literals at load). */
export function re2LiteralError(pattern: string): string | null {
  try {
    compileRe2(pattern);
    return null;
  } catch (e) {
    return `invalid RE2 pattern: ${(e as Error).message}`;
  }
}

/**
 * CEL `matches` semantics with RE2: true when the pattern matches any substring (anchor with `^`/`$`
 * for a whole-string match), as in the CEL spec and cel-go.
 */
export function matchesRe2(input: string, pattern: string): boolean {
  let re: RE2JS;
  try {
    re = compileRe2(pattern);
  } catch (e) {
    throw new EvaluationError(`matchesRE2: invalid RE2 pattern: ${(e as Error).message}`);
  }
  return re.test(input);
}

/** Why `pattern` is not a glob this library accepts, or null when it is. */
export function globLiteralError(pattern: string): string | null {
  const star = pattern.indexOf('*');
  if (star === -1 || pattern === '*') return null;
  if (star === 0 && pattern.indexOf('*', 1) === -1) return null;
  if (star === pattern.length - 1) return null;
  return `glob "${pattern}" may only have one "*", at its start or its end (Istio's prefix/suffix match), or be "*"`;
}

/**
 * Istio's string match for principals and namespaces (AuthorizationPolicy "Source" docs): exact,
 * `prefix*`, `*suffix`, or `*` which matches any non-empty value (so, like Istio's `principals: ["*"]`,
 * it is false for a peer without identity).
 */
export function globMatch(value: string, pattern: string): boolean {
  if (pattern === '*') return value !== '';
  const err = globLiteralError(pattern);
  if (err !== null) throw new EvaluationError(`globMatch: ${err}`);
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return value === pattern;
}

/** Registers `string.matchesRE2(string)` and `string.globMatch(string)` on `env`. */
export function registerRegexFunctions(env: Environment): void {
  env.registerFunction('string.matchesRE2(string): bool', {
    handler: matchesRe2,
    description: 'RE2 (linear-time) regular expression search; anchor with ^ and $ for a full match.',
  });
  env.registerFunction('string.globMatch(string): bool', {
    handler: globMatch,
    description: 'Istio-style match: exact, "prefix*", "*suffix", or "*" (any non-empty value).',
  });
}
