/**
 * The Kubernetes/cel-go `ext.Strings()` helpers the engine lacks. cel-js already provides
 * contains, startsWith, endsWith, lowerAscii, upperAscii, trim, indexOf, lastIndexOf, substring,
 * split, join and size; this adds replace, charAt and reverse with cel-go's semantics.
 */
import { EvaluationError, type Environment } from '@marcbachmann/cel-js';

/** Go's strings.Replace: at most `limit` replacements (negative: all); "" matches between code points. */
export function replaceN(s: string, from: string, to: string, limit: number): string {
  if (limit < 0) limit = Infinity;
  if (from !== '') {
    let out = '';
    let rest = s;
    for (let n = 0; n < limit; n++) {
      const i = rest.indexOf(from);
      if (i === -1) break;
      out += rest.slice(0, i) + to;
      rest = rest.slice(i + from.length);
    }
    return out + rest;
  }
  const cps = Array.from(s);
  let out = '';
  let n = 0;
  for (let i = 0; i <= cps.length; i++) {
    if (n < limit) {
      out += to;
      n++;
    }
    if (i < cps.length) out += cps[i];
  }
  return out;
}

/** Registers the missing string helpers on `env`. */
export function registerStringFunctions(env: Environment): void {
  env.registerFunction('string.replace(string, string): string', {
    handler: (s: string, from: string, to: string) => replaceN(s, from, to, -1),
    description: 'Replaces every occurrence of the first argument by the second.',
  });
  env.registerFunction('string.replace(string, string, int): string', {
    handler: (s: string, from: string, to: string, limit: bigint) =>
      replaceN(s, from, to, limit > 1_000_000n ? -1 : Number(limit)),
    description: 'Replaces at most limit occurrences (negative: all).',
  });
  env.registerFunction('string.charAt(int): string', {
    handler: (s: string, i: bigint) => {
      const cps = Array.from(s);
      if (i < 0n || i > BigInt(cps.length)) throw new EvaluationError(`charAt: index ${i} out of range`);
      return cps[Number(i)] ?? '';
    },
    description: 'The code point at the index, "" at the end of the string.',
  });
  env.registerFunction('string.reverse(): string', {
    handler: (s: string) => Array.from(s).reverse().join(''),
    description: 'The string with its code points in reverse order.',
  });
}
