/**
 * The Kubernetes/cel-go `ext.Strings()` helpers the engine lacks. cel-js already provides
 * contains, startsWith, endsWith, lowerAscii, upperAscii, trim, indexOf, lastIndexOf, substring,
 * split, join and size; this adds replace, charAt and reverse with cel-go's semantics.
 *
 * Each helper is linear in its input and refuses to build a string longer than
 * MAX_STRING_RESULT_LENGTH: a policy must never be able to hang the gateway (docs/design.md §3), and the
 * load-time cost model (limits.ts) relies on these bounds.
 */
import { EvaluationError, type Environment } from '@marcbachmann/cel-js';
import { MAX_STRING_RESULT_LENGTH } from './limits.ts';

function tooLong(fn: string): EvaluationError {
  return new EvaluationError(
    `${fn}: the result would be longer than ${MAX_STRING_RESULT_LENGTH} characters, the most a string function may build (the largest request input is 64 KiB)`,
  );
}

/**
 * Go's strings.Replace: at most `limit` replacements (negative: all); "" matches between code
 * points. Throws an EvaluationError instead of building a result longer than
 * MAX_STRING_RESULT_LENGTH characters (`h.replace("a", <3,000 characters>)` on a 64 KiB header
 * would otherwise build 190 MB). The result's length is computed before anything is built.
 */
export function replaceN(s: string, from: string, to: string, limit: number): string {
  if (limit < 0) limit = Infinity;
  if (from !== '') {
    // Find where the limit-th match ends (the whole string when fewer matches exist).
    let count = 0;
    let end = 0;
    const growth = to.length - from.length;
    for (let i = s.indexOf(from); i !== -1 && count < limit; i = s.indexOf(from, end)) {
      count++;
      end = i + from.length;
      // Stop counting as soon as the result is certain to be too long.
      if (growth > 0 && s.length + count * growth > MAX_STRING_RESULT_LENGTH) throw tooLong('replace');
    }
    if (count === 0) return s;
    if (s.length + count * growth > MAX_STRING_RESULT_LENGTH) throw tooLong('replace');
    // split/join are native and linear; a function-free replaceAll would interpret "$" in `to`.
    return s.slice(0, end).split(from).join(to) + s.slice(end);
  }
  let codePoints = 0;
  for (let i = 0; i < s.length; i += s.codePointAt(i)! > 0xffff ? 2 : 1) codePoints++;
  const inserts = Math.min(limit, codePoints + 1);
  const length = s.length + inserts * to.length;
  if (length > MAX_STRING_RESULT_LENGTH) throw tooLong('replace');
  if (inserts === 0) return s;
  const cps = Array.from(s);
  if (inserts > codePoints) return to + cps.join(to) + to;
  return to + cps.slice(0, inserts).join(to) + cps.slice(inserts).join('');
}

/**
 * The code point at `index` ("" at the end of the string), walking at most `index` code points:
 * O(index), with no copy of the string.
 */
export function charAt(s: string, index: bigint): string {
  if (index < 0n || index > BigInt(s.length)) throw new EvaluationError(`charAt: index ${index} out of range`);
  const target = Number(index);
  let i = 0;
  for (let cp = 0; cp < target; cp++) {
    if (i >= s.length) throw new EvaluationError(`charAt: index ${index} out of range`);
    i += isSurrogatePair(s, i) ? 2 : 1;
  }
  if (i >= s.length) return '';
  return s.slice(i, i + (isSurrogatePair(s, i) ? 2 : 1));
}

/** Whether the code units at `i` and `i + 1` form one code point (a UTF-16 surrogate pair). */
function isSurrogatePair(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c < 0xd800 || c > 0xdbff) return false;
  const d = s.charCodeAt(i + 1);
  return d >= 0xdc00 && d <= 0xdfff;
}

const utf16Decoder = new TextDecoder('utf-16le');

/**
 * `s` with its code points in reverse order (surrogate pairs kept together), in one linear pass
 * over UTF-16 code units. Refuses inputs longer than MAX_STRING_RESULT_LENGTH.
 */
export function reverseString(s: string): string {
  if (s.length > MAX_STRING_RESULT_LENGTH) throw tooLong('reverse');
  const out = new Uint16Array(s.length);
  let j = 0;
  for (let i = s.length - 1; i >= 0; i--) {
    const c = s.charCodeAt(i);
    // A low surrogate preceded by a high one: emit the pair in its original order.
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const h = s.charCodeAt(i - 1);
      if (h >= 0xd800 && h <= 0xdbff) {
        out[j++] = h;
        out[j++] = c;
        i--;
        continue;
      }
    }
    out[j++] = c;
  }
  return utf16Decoder.decode(out);
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
    handler: charAt,
    description: 'The code point at the index, "" at the end of the string.',
  });
  env.registerFunction('string.reverse(): string', {
    handler: reverseString,
    description: 'The string with its code points in reverse order.',
  });
}
