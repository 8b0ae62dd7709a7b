/**
 * The fuzz/property harness shared by test/fuzz/*.test.ts (test/fuzz/README.md): one seed for every property,
 * a bounded number of runs per property, a per-input hang detector, and string mutators that turn
 * real inputs (ztunnel's headers, the example policies, examples/gateway.yaml) into near misses.
 *
 * fast-check generates and mutates; on a failure it shrinks the input to a minimal one and the
 * message carries the seed and the replay path. See test/fuzz/README.md for running another seed.
 */
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';

/** The seed CI uses (a fixed one, so every run tries the same inputs and a red run replays). */
export const DEFAULT_FUZZ_SEED = 12_2026_11;

/**
 * `WAYGATE_FUZZ_SEED`: a 32-bit integer, or `random` for a fresh seed (printed on failure and in
 * the test's diagnostics). Unset, the fixed {@link DEFAULT_FUZZ_SEED}: tests stay deterministic.
 */
export const FUZZ_SEED: number = parseSeed(process.env['WAYGATE_FUZZ_SEED']);

/** `WAYGATE_FUZZ_RUNS`: a multiplier of every property's run count (default 1; e.g. 20 for a long soak). */
export const FUZZ_RUNS_FACTOR: number = parseFactor(process.env['WAYGATE_FUZZ_RUNS']);

function parseSeed(text: string | undefined): number {
  if (text === undefined || text === '') return DEFAULT_FUZZ_SEED;
  if (text === 'random') return (Math.random() * 2 ** 32) | 0;
  if (!/^-?\d+$/.test(text)) throw new Error(`WAYGATE_FUZZ_SEED=${JSON.stringify(text)} is not an integer or "random"`);
  return Number(text) | 0;
}

function parseFactor(text: string | undefined): number {
  if (text === undefined || text === '') return 1;
  const n = Number(text);
  if (!(n > 0)) throw new Error(`WAYGATE_FUZZ_RUNS=${JSON.stringify(text)} is not a positive number`);
  return n;
}

/**
 * Per-input bound. This is a hang detector, not a timing assertion on normal behaviour: every
 * input here parses in well under a millisecond to a few tens of milliseconds (the 4 MiB
 * regression header), so one that takes seconds has hit a super-linear path (a quadratic scan,
 * catastrophic backtracking: that header took 20 s before its fix). 5 s, not 1 s: on a 2-core
 * machine under a full parallel test run the linear 4 MiB case took 1.2 s. A true infinite loop
 * never returns to be measured; the runner's per-test timeout catches that one.
 */
export const HANG_BOUND_MS = 5000;

/** Runs `fn` on one input and fails when it takes longer than {@link HANG_BOUND_MS}. */
export function withinHangBound<T>(what: string, fn: () => T): T {
  const start = performance.now();
  const result = fn();
  const elapsedMs = performance.now() - start;
  if (elapsedMs > HANG_BOUND_MS) {
    throw new Error(`${what} took ${elapsedMs.toFixed(0)} ms on one input (hang bound ${HANG_BOUND_MS} ms): a super-linear path`);
  }
  return result;
}

const MAX_REPORT_CHARS = 6000;
const PROPERTY_TIME_LIMIT_MS = 30_000;

/** Minimal view of node:test's context: where the seed is reported. */
interface Diagnosable {
  diagnostic(message: string): void;
}

/**
 * Checks a property with the suite's seed for `runs` inputs (times {@link FUZZ_RUNS_FACTOR}).
 * A failure throws with the seed, the shrunk counterexample and the command that replays it.
 */
export function checkProperty<Ts>(
  t: Diagnosable,
  name: string,
  property: fc.IProperty<Ts>,
  runs: number,
  { shrink = true }: { shrink?: boolean } = {},
): void {
  const numRuns = Math.max(1, Math.round(runs * FUZZ_RUNS_FACTOR));
  // interruptAfterTimeLimit bounds shrinking, which re-runs the input many times: a counterexample
  // that trips the hang bound costs about a second per shrink step. The failure found is still
  // reported (with the best shrink so far). A passing property never gets near this limit (it
  // grows with WAYGATE_FUZZ_RUNS so a soak is not cut short).
  // `shrink: false` is for a property known to fail (a todo test): report the first failure at once.
  const timeLimitMs = PROPERTY_TIME_LIMIT_MS * Math.max(1, FUZZ_RUNS_FACTOR);
  const details = fc.check(property, { seed: FUZZ_SEED, numRuns, interruptAfterTimeLimit: timeLimitMs, endOnFailure: !shrink });
  t.diagnostic(`${name}: seed ${FUZZ_SEED}, ${details.numRuns} runs${details.interrupted ? ` (interrupted after ${timeLimitMs} ms)` : ''}`);
  if (!details.failed) return;
  const full = fc.defaultReportMessage(details) ?? 'the property failed';
  // A counterexample can be a 70 KB header; the seed and path replay it exactly.
  const report = full.length > MAX_REPORT_CHARS ? `${full.slice(0, MAX_REPORT_CHARS)}... (report cut at ${MAX_REPORT_CHARS} of ${full.length} chars)` : full;
  const error = details.errorInstance;
  const why = error instanceof Error ? error.message : String(error);
  throw new Error(
    `fuzz property "${name}" failed with WAYGATE_FUZZ_SEED=${FUZZ_SEED}\n` +
      `replay: WAYGATE_FUZZ_SEED=${FUZZ_SEED} node --import tsx --test test/fuzz/<this file>.test.ts\n` +
      `${why.length > MAX_REPORT_CHARS ? `${why.slice(0, MAX_REPORT_CHARS)}...` : why}\n${report}`,
    { cause: error },
  );
}

// ---------------------------------------------------------------------------------------------
// Prototype pollution
// ---------------------------------------------------------------------------------------------

const OBJECT_PROTOTYPE_KEYS = Reflect.ownKeys(Object.prototype).map(String).sort().join(',');

/** Throws when a parser wrote onto Object.prototype (a `__proto__` key reaching a plain object). */
export function assertObjectPrototypeIntact(): void {
  const now = Reflect.ownKeys(Object.prototype).map(String).sort().join(',');
  if (now !== OBJECT_PROTOTYPE_KEYS) throw new Error(`Object.prototype changed: ${now}`);
  if (Object.getPrototypeOf(Object.prototype) !== null) throw new Error('Object.prototype got a prototype');
  const probe: Record<string, unknown> = {};
  for (const key of ['polluted', 'x', 'a', 'constructorX']) {
    if (probe[key] !== undefined) throw new Error(`Object.prototype.${key} is set`);
  }
}

// ---------------------------------------------------------------------------------------------
// Mutators
// ---------------------------------------------------------------------------------------------

/** Characters that break parsers: separators, quotes, escapes, controls, non-ASCII, lone surrogates. */
export const NASTY_CHARS = [
  ',', ';', '=', ':', '"', "'", '\\', '%', '[', ']', '{', '}', '#', '-', '.', '/', '@', ' ', '\t', '\r', '\n',
  '\0', '\x7f', '\x1b', '\u00a0', '\u00ff', '\ufeff', '\u2028', '\u0130', '\uff11', '\u0661', '\ud800', '\udc00', '😀',
] as const;

/** Short strings that mean something to one of the parsers under test. */
export const NASTY_WORDS = [
  '__proto__', 'constructor', 'prototype', '%00', '%zz', '%', '%25', '%E2%82%AC', '""', '\\"', '::', ':::',
  '%eth0', '%25eth0', '0x7f', '0177', '00', '65535', '65536', '0', '-1', '1e3', 'ff', '---', '...', '- ', '? ',
  '&a', '*a', '<<: *a', '!!str', '!tag', '|', '>-', '{}', '[]', 'null', '~', 'true', 'NaN', '.inf',
] as const;

const nastyText = fc.oneof(
  fc.constantFrom(...NASTY_CHARS),
  fc.constantFrom(...NASTY_WORDS),
  fc.string({ maxLength: 8, unit: 'grapheme-ascii' }),
  fc.string({ maxLength: 4, unit: 'binary' }),
);

/** One edit of a string. Positions are taken modulo the length when applied. */
export type Mutation =
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; len: number }
  | { op: 'replace'; at: number; len: number; text: string }
  | { op: 'flip'; at: number; bit: number }
  | { op: 'duplicate'; at: number; len: number; times: number }
  | { op: 'truncate'; at: number }
  | { op: 'case'; at: number; len: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: nastyText }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }), text: nastyText }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }), times: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('case' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 32 }) }),
);

/** Applies edits in order. Flips are on UTF-16 code units, so they can make lone surrogates. */
export function mutate(text: string, mutations: readonly Mutation[]): string {
  let s = text;
  for (const m of mutations) {
    const at = m.at % (s.length + 1);
    switch (m.op) {
      case 'insert':
        s = s.slice(0, at) + m.text + s.slice(at);
        break;
      case 'delete':
        s = s.slice(0, at) + s.slice(at + m.len);
        break;
      case 'replace':
        s = s.slice(0, at) + m.text + s.slice(at + m.len);
        break;
      case 'flip':
        if (at < s.length) s = s.slice(0, at) + String.fromCharCode(s.charCodeAt(at) ^ (1 << m.bit)) + s.slice(at + 1);
        break;
      case 'duplicate':
        s = s.slice(0, at) + s.slice(at, at + m.len).repeat(m.times + 1) + s.slice(at + m.len);
        break;
      case 'truncate':
        s = s.slice(0, at);
        break;
      case 'case': {
        const part = s.slice(at, at + m.len);
        const swapped = part === part.toUpperCase() ? part.toLowerCase() : part.toUpperCase();
        s = s.slice(0, at) + swapped + s.slice(at + m.len);
        break;
      }
    }
  }
  return s;
}

/** A real value, mutated 0-6 times. */
export function mutatedFrom(values: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...values), fc.array(mutationArb, { maxLength: 6 }))
    .map(([value, mutations]) => mutate(value, mutations));
}

/** One edit of a YAML file, line-aware: what hand edits, bad merges and torn writes do to a file. */
export type YamlMutation =
  | { op: 'text'; mutation: Mutation }
  | { op: 'byteFlip'; at: number; bit: number }
  | { op: 'duplicateLine'; line: number }
  | { op: 'removeLine'; line: number }
  | { op: 'swapLines'; line: number }
  | { op: 'indent'; line: number; delta: number }
  | { op: 'cut'; at: number }
  | { op: 'empty' };

export const yamlMutationArb: fc.Arbitrary<YamlMutation> = fc.oneof(
  fc.record({ op: fc.constant('text' as const), mutation: mutationArb }),
  fc.record({ op: fc.constant('byteFlip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('duplicateLine' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('removeLine' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('swapLines' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('indent' as const), line: fc.nat(), delta: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
  fc.constant({ op: 'empty' as const }),
);

/** Applies YAML edits. Byte flips act on the UTF-8 bytes and decode them back as the loader does. */
export function mutateYaml(text: string, mutations: readonly YamlMutation[]): string {
  let s = text;
  for (const m of mutations) {
    const lines = s.split('\n');
    switch (m.op) {
      case 'text':
        s = mutate(s, [m.mutation]);
        break;
      case 'byteFlip': {
        const bytes = Buffer.from(s, 'utf8');
        if (bytes.length === 0) break;
        const at = m.at % bytes.length;
        bytes[at] = bytes[at]! ^ (1 << m.bit);
        s = bytes.toString('utf8');
        break;
      }
      case 'duplicateLine': {
        const i = m.line % lines.length;
        lines.splice(i, 0, lines[i]!);
        s = lines.join('\n');
        break;
      }
      case 'removeLine':
        lines.splice(m.line % lines.length, 1);
        s = lines.join('\n');
        break;
      case 'swapLines': {
        const i = m.line % lines.length;
        const j = (i + 1) % lines.length;
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        s = lines.join('\n');
        break;
      }
      case 'indent': {
        const i = m.line % lines.length;
        const line = lines[i]!;
        lines[i] = m.delta >= 0 ? ' '.repeat(m.delta) + line : line.replace(new RegExp(`^ {0,${-m.delta}}`), '');
        s = lines.join('\n');
        break;
      }
      case 'cut':
        s = s.slice(0, m.at % (s.length + 1));
        break;
      case 'empty':
        s = '';
        break;
    }
  }
  return s;
}

/**
 * Offsets where a torn write most plausibly stops, and where a loader is most likely to misread
 * the rest: the start and end of every line, and both sides of every `---` document marker.
 */
export function cutPoints(text: string): number[] {
  const points = new Set<number>([0, text.length]);
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\n') {
      points.add(i);
      points.add(i + 1);
    }
  }
  for (let i = text.indexOf('---'); i !== -1; i = text.indexOf('---', i + 1)) {
    points.add(i);
    points.add(i + 3);
    if (text[i + 3] === '\n') points.add(i + 4);
  }
  return [...points].filter((p) => p <= text.length).sort((a, b) => a - b);
}

/** A prefix length of `text`: mostly a {@link cutPoints} offset, otherwise any offset. */
export function cutArb(text: string): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...cutPoints(text)) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: text.length }) },
  );
}

// ---------------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------------

/**
 * Why a 1-based `line:col` is not inside `text`, or null when it is. A position may name the end of
 * a line (col = length + 1), where "unexpected end" errors point; lines are split on '\n' as the
 * YAML library counts them. `lineEnd: false` skips the check against the end of the line.
 */
export function positionProblem(text: string, line: number, col: number, { lineEnd = true } = {}): string | null {
  const lines = text.split('\n');
  if (!Number.isInteger(line) || line < 1 || line > lines.length) return `line ${line} outside 1-${lines.length}`;
  const length = lines[line - 1]!.length;
  if (!Number.isInteger(col) || col < 1) return `col ${col} below 1 on line ${line}`;
  if (lineEnd && col > length + 1) return `col ${col} outside 1-${length + 1} on line ${line}`;
  return null;
}
