/**
 * Load-time bounds on CEL expressions. CEL has no runtime cost budget in our engine (docs/design.md §8.1:
 * cel-js offers only parse-time `maxAstNodes`/`maxDepth`), so every bound that keeps a decision
 * fast is proven when the policy loads: a policy must never be able to hang the gateway.
 *
 * The bounds, and why each exists:
 * - length and AST size: parse and check time grow with them, and no sane rule needs more;
 * - nesting depth: the parser, checker and evaluator recurse, so depth is stack;
 * - comprehension nesting: each level multiplies the iteration count;
 * - list literal size: a literal is the one iterable whose size the author chooses freely;
 * - estimated iterations: the product of worst-case iterable sizes along every nesting chain,
 *   using the largest size each input can have on the wire (a CONNECT header list is at most
 *   64 KiB, docs/design.md §2), so no expression reaches a million iterations (about 0.3 s, docs/design.md §8.1);
 * - estimated cost (estimateCost): iterations alone miss the work each one does, e.g. a call on a
 *   64 KiB header inside a loop over that header's split (review: 2-115 s per decision). Every
 *   node is charged for the largest input it can see, loop bodies are multiplied by their
 *   receiver's size, and one evaluation must stay under maxEstimatedCost;
 * - value bound: policy variables are read by other expressions as values of unknown shape, so
 *   no expression may produce a value larger than that assumption (UNKNOWN_VALUE_BOUND).
 */
import type { ASTNode } from '@marcbachmann/cel-js';
import { MAX_HEADER_LIST_BYTES } from '../attributes.ts';
import { GROUPS, isMapFormat, maxLengthOf, TOP_LEVEL, type Attribute } from '../attribute-tables.ts';

/** The bounds every waygate CEL expression obeys. */
export const CEL_LIMITS = Object.freeze({
  /** Characters in one expression. */
  maxExpressionLength: 4096,
  /** AST nodes produced by the parser (cel-js `maxAstNodes`). */
  maxAstNodes: 1024,
  /** Recursion depth of the grammar (cel-js `maxDepth`: calls, selects, indexes, aggregates). */
  maxDepth: 32,
  /** Comprehension macros (all, exists, exists_one, map, filter) nested inside each other's bodies. */
  maxComprehensionNesting: 2,
  /** Elements of one list literal (cel-js `maxListElements`). */
  maxListElements: 256,
  /** Entries of one map literal (cel-js `maxMapEntries`). */
  maxMapEntries: 256,
  /** Arguments of one call (cel-js `maxCallArguments`). */
  maxCallArguments: 16,
  /**
   * Worst-case iterations of all comprehensions of one expression (see estimateIterations): four
   * passes over the largest possible header split (e.g. `split(",").map(...).filter(...).exists(...)`),
   * about 80 ms at the measured 0.3 µs per iteration; a million is out of reach.
   */
  maxEstimatedIterations: 262_144,
  /**
   * Worst-case cost of one evaluation (estimateCost, units of CEL_COST: about a nanosecond each).
   * Admits one pass of a small predicate over the largest header split (the x-groups idiom,
   * `h.split(",").exists(g, g.trim() == "admin")`: 27 M) and a map/filter/exists chain over it
   * (83 M); refuses any call on a header repeated per element of a header split (billions).
   * Expressions at the edge measured 10-70 ms per evaluation on the 2-core reference machine
   * under load, against 64 KiB adversarial headers; realistic inputs are orders of magnitude less.
   */
  maxEstimatedCost: 100_000_000,
});

/** The largest a header-derived string can be: the whole CONNECT header list (docs/design.md §2: 64 KiB). */
export const MAX_HEADER_BYTES = MAX_HEADER_LIST_BYTES;
/**
 * The longest string replace() and reverse() build (UTF-16 code units); longer results are an
 * EvaluationError (fail closed). No legitimate result outgrows the largest input, a 64 KiB header.
 */
export const MAX_STRING_RESULT_LENGTH = MAX_HEADER_BYTES;
/**
 * The most entries `request.headers`/`request.baggage` can hold: an HPACK header field costs at
 * least 32 octets of the header-list size (RFC 7541 §4.1), so 64 KiB carries at most 2,048.
 */
export const MAX_HEADER_ENTRIES = MAX_HEADER_BYTES / 32;
/** Worst-case size of an iterable whose size cannot be bounded more tightly. */
export const UNBOUNDED_ITERABLE_SIZE = MAX_HEADER_BYTES;

/** The comprehension macros; each iterates its receiver. */
export const COMPREHENSION_MACROS: ReadonlySet<string> = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

/** A limit violation: which bound, where (offset into the expression), and an explanation. */
export interface LimitViolation {
  message: string;
  offset: number;
}

/** The AST children of a node, in source order (macro bodies included). */
export function childNodes(node: ASTNode): ASTNode[] {
  switch (node.op) {
    case 'value':
    case 'id':
      return [];
    case '.':
    case '.?':
      return [node.args[0]];
    case '!_':
    case '-_':
      return [node.args];
    case 'call':
      return [...node.args[1]];
    case 'rcall':
      return [node.args[1], ...node.args[2]];
    case 'list':
      return [...node.args];
    case 'map':
      return node.args.flatMap((e) => [e[0], e[1]]);
    default:
      return [...(node.args as ASTNode[])];
  }
}

/** The parts of a comprehension macro call such as `l.exists(x, p)`. */
export interface ComprehensionParts {
  name: string;
  receiver: ASTNode;
  iterVar: string;
  /** The macro's expression arguments after the iteration variable (predicate, transform). */
  body: ASTNode[];
}

/** The parts of `node` when it is a comprehension macro call (all, exists, exists_one, map, filter), else null. */
export function comprehensionOf(node: ASTNode): ComprehensionParts | null {
  if (node.op !== 'rcall') return null;
  const [name, receiver, args] = node.args;
  if (!COMPREHENSION_MACROS.has(name)) return null;
  if (!(args.length === 2 || (name === 'map' && args.length === 3))) return null;
  const v = args[0];
  if (v === undefined || v.op !== 'id') return null;
  return { name, receiver, iterVar: v.args, body: args.slice(1) };
}

function why(bound: string): string {
  return `${bound}; a policy must never be able to hang the gateway, so expression size and cost are bounded when the policy loads`;
}

/** Checks the raw text before parsing. */
export function checkExpressionLength(text: string): LimitViolation | null {
  if (text.length <= CEL_LIMITS.maxExpressionLength) return null;
  return {
    offset: CEL_LIMITS.maxExpressionLength,
    message: why(
      `the expression is ${text.length} characters long, more than the ${CEL_LIMITS.maxExpressionLength} allowed (split it into rules or variables)`,
    ),
  };
}

/** Maps a cel-js `limit_exceeded` parse error to an explanation. */
export function explainParserLimit(summary: string): string {
  const m = /Exceeded (\w+) \((\d+)\)/.exec(summary);
  const key = m?.[1] ?? 'a structural limit';
  const value = m?.[2] ?? '?';
  const what: Record<string, string> = {
    maxAstNodes: `the expression has more than ${value} syntax nodes`,
    maxDepth: `the expression nests more than ${value} levels deep`,
    maxListElements: `a list literal has more than ${value} elements`,
    maxMapEntries: `a map literal has more than ${value} entries`,
    maxCallArguments: `a call has more than ${value} arguments`,
  };
  return why(what[key] ?? `the expression exceeds ${key} (${value})`);
}

/** Worst-case number of elements `node` can evaluate to when used as an iterable. */
export function estimateSize(node: ASTNode): number {
  switch (node.op) {
    case 'list':
      return node.args.length;
    case 'map':
      return node.args.length;
    case '+': {
      const [a, b] = node.args;
      return Math.min(UNBOUNDED_ITERABLE_SIZE * 16, estimateSize(a) + estimateSize(b));
    }
    case '?:':
      return Math.max(estimateSize(node.args[1]), estimateSize(node.args[2]));
    case '.': {
      // A map attribute (`request.headers`) holds at most its bound's entries.
      const [obj, field] = node.args;
      const attr = obj.op === 'id' ? groupAttributeBound(obj.args, field) : undefined;
      return attr !== undefined && attr.kind === 'map' ? attr.size : UNBOUNDED_ITERABLE_SIZE;
    }
    case 'rcall': {
      const [name, receiver, args] = node.args;
      if (name === 'map' || name === 'filter') return estimateSize(receiver);
      if (name === 'split') {
        // `s.split(sep)` yields at most len(s)+1 parts; a literal receiver has a known length.
        if (receiver.op === 'value' && typeof receiver.args === 'string') return receiver.args.length + 1;
        const limit = args[1];
        if (limit?.op === 'value' && typeof limit.args === 'bigint' && limit.args >= 0n) {
          return Math.min(Number(limit.args), MAX_HEADER_BYTES + 1);
        }
        return MAX_HEADER_BYTES + 1;
      }
      return UNBOUNDED_ITERABLE_SIZE;
    }
    default:
      return UNBOUNDED_ITERABLE_SIZE;
  }
}

/**
 * Worst-case iterations of every comprehension in `node`: a comprehension costs the size of its
 * receiver times (1 + the iterations inside its body), plus whatever its receiver costs.
 */
export function estimateIterations(node: ASTNode): number {
  const comp = comprehensionOf(node);
  if (comp !== null) {
    let body = 0;
    for (const a of comp.body) body += estimateIterations(a);
    return estimateIterations(comp.receiver) + estimateSize(comp.receiver) * (1 + body);
  }
  let total = 0;
  for (const c of childNodes(node)) total += estimateIterations(c);
  return total;
}

/** Refuses comprehensions nested deeper than allowed (a module-level walk: no closure per call, see analyze.ts). */
function checkNesting(node: ASTNode, nesting: number, out: LimitViolation[]): void {
  const comp = comprehensionOf(node);
  if (comp !== null) {
    const { name, receiver, body } = comp;
    checkNesting(receiver, nesting, out);
    const depth = nesting + 1;
    if (depth > CEL_LIMITS.maxComprehensionNesting) {
      out.push({
        offset: node.start,
        message: why(
          `${name}() is nested ${depth} comprehensions deep, more than the ${CEL_LIMITS.maxComprehensionNesting} allowed (every level multiplies the iterations)`,
        ),
      });
      return;
    }
    for (const a of body) checkNesting(a, depth, out);
    return;
  }
  for (const c of childNodes(node)) checkNesting(c, nesting, out);
}

/** Checks the parsed AST against the bounds the parser does not enforce itself. */
export function checkStructuralLimits(ast: ASTNode): LimitViolation[] {
  const out: LimitViolation[] = [];
  checkNesting(ast, 0, out);
  if (out.length === 0) {
    const estimate = estimateNode(ast, new Map());
    const cost = estimate.cost;
    const n = estimateIterations(ast);
    if (n > CEL_LIMITS.maxEstimatedIterations) {
      out.push({
        offset: ast.start,
        message: why(
          `its comprehensions can run up to ${n.toLocaleString('en-US')} iterations on the largest possible input, more than the ${CEL_LIMITS.maxEstimatedIterations.toLocaleString('en-US')} allowed (iterate over list literals, or avoid nesting over request data)`,
        ),
      });
    } else if (cost > CEL_LIMITS.maxEstimatedCost) {
      out.push({ offset: ast.start, message: explainCost(cost) });
    } else {
      const tooBig = exceedsVariableBound(estimate.bound);
      if (tooBig !== null) {
        out.push({
          offset: ast.start,
          message: why(
            `its value can be ${tooBig}, more than a value may hold (${(MAX_HEADER_BYTES + 1).toLocaleString('en-US')} elements of 64 KiB together, like a split of the largest header), ` +
              'which every expression reading a policy variable assumes (build it from one header, or keep the list literal)',
          ),
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Load-time cost model.
//
// Counting comprehension iterations is not enough: a call inside a loop body runs once per
// element, and a call on request data may walk a 64 KiB header each time
// (`h.split(",").exists(g, h.contains(g))` is 65,537 scans of 64 KiB, 30 s of CPU). So every
// node is charged what it costs on the largest input it can see, and comprehensions multiply
// their body's charge by their receiver's size. The units approximate nanoseconds on the
// reference machine (docs/design.md §8.1: one comprehension iteration of a small body is about 0.2-0.3 µs;
// native string scans run at about 1 ns per character); the budget is the contract, the
// correspondence to wall time is only a calibration.
//
// Soundness of the loop charge: the body's charge is a function f(s) of the size s of the
// element it sees, built only from sums, products and maxima of non-negative, non-decreasing
// terms, so f is convex. When the elements' sizes are known to sum to at most T (split parts,
// header names), the largest total over N elements is at a vertex of {s_i >= 0, Σ s_i <= T}:
// one element of size T and N-1 empty ones, i.e. f(T) + (N-1)·f(0). Otherwise it is N·f(max).

/** Weights of the cost model (units approximate nanoseconds on the reference machine). */
export const CEL_COST = Object.freeze({
  /** Evaluating one AST node: an attribute read, a literal, an operator, a call's dispatch. */
  node: 50,
  /** Per element a comprehension visits, besides its body: binding the variable, accumulating. */
  iteration: 150,
  /** Per character a string function reads or writes (scan, compare, copy, case-fold). */
  char: 1,
  /** Per element a function builds (split parts, list concatenation, join inputs). */
  element: 50,
  /** Per character a substring search (contains, indexOf, lastIndexOf) reads, needle included. */
  search: 5,
  /** Per character charAt() and size() walk code point by code point. */
  walk: 8,
  /** Per input character replace() reads: it counts the matches, then splits and joins (measured 30-55 ns). */
  replace: 64,
  /** Per input character reverse() reads: one pass into a code-unit buffer, then a decode (measured 6-9 ns). */
  reverse: 16,
  /** Per character matchesRE2() reads: re2js is an automaton written in JavaScript. */
  regexChar: 20,
  /** Per pattern character when matchesRE2()'s pattern is not a literal (compiled per decision). */
  regexCompile: 200,
});

/** Kinds of value the cost model distinguishes. */
export type ValueKind = 'string' | 'list' | 'map' | 'scalar' | 'unknown';

/** The largest value an expression node can produce, as the cost model sees it. */
export interface ValueBound {
  kind: ValueKind;
  /** Characters of a string, elements of a list, entries of a map; 1 for a scalar. */
  size: number;
  /** Lists: the elements; maps: the keys. The largest size one can have, and their kind. */
  elem: number;
  elemKind: ValueKind;
  /** The largest possible sum of the element (key) sizes; Infinity when only elem * size bounds it. */
  total: number;
  /** Maps: the largest size of one value, and their kind. */
  value: number;
  valueKind: ValueKind;
}

function bound(kind: ValueKind, size: number, more: Partial<Omit<ValueBound, 'kind' | 'size'>> = {}): ValueBound {
  return { kind, size, elem: 0, elemKind: 'unknown', total: Infinity, value: 0, valueKind: 'unknown', ...more };
}
const SCALAR = bound('scalar', 1);
const str = (n: number): ValueBound => bound('string', n);
/**
 * Anything whose shape the model cannot see, policy variables first of all: as large as a split
 * of the largest header (65,537 elements, each up to 64 KiB, 64 KiB together; maps alike, values
 * up to 64 KiB each). checkStructuralLimits refuses any expression whose value could exceed this,
 * so a variable read by another expression never breaks the assumption.
 */
export const UNKNOWN_VALUE_BOUND: Readonly<ValueBound> = Object.freeze(
  bound('unknown', MAX_HEADER_BYTES + 1, {
    elem: MAX_HEADER_BYTES,
    elemKind: 'unknown',
    total: MAX_HEADER_BYTES,
    value: MAX_HEADER_BYTES,
    valueKind: 'unknown',
  }),
);
const UNKNOWN = UNKNOWN_VALUE_BOUND;
/** A header or baggage map: at most 2,048 entries whose names (and values) fit in 64 KiB together. */
const HEADER_MAP = bound('map', MAX_HEADER_ENTRIES, {
  elem: MAX_HEADER_BYTES,
  elemKind: 'string',
  total: MAX_HEADER_BYTES,
  value: MAX_HEADER_BYTES,
  valueKind: 'string',
});

/** The largest value an attribute can hold (see AttributeDef.maxLength in ../attributes.ts). */
function attributeBound(a: Attribute): ValueBound {
  if (isMapFormat(a.format)) return HEADER_MAP;
  if (a.format === 'port' || a.format === 'timestamp') return SCALAR;
  return str(maxLengthOf(a));
}

/**
 * Largest value of each attribute of each group, from the catalogue (docs/design.md §3). Identity strings
 * are bounded by SPIFFE-ID §2.3 (2,048 bytes, trust domain 255), addresses by their longest text
 * form, the trace id by W3C Trace Context (32 hex digits); :authority and header values only by
 * the 64 KiB header list; header and baggage maps by the header list (HEADER_MAP).
 */
export const ATTRIBUTE_BOUNDS: Readonly<Record<string, Readonly<Record<string, ValueBound>>>> = Object.freeze(
  Object.fromEntries(GROUPS.map((g) => [g.name, Object.freeze(Object.fromEntries(g.attributes.map((a) => [a.name, attributeBound(a)])))])),
);
/** Largest value of each top-level attribute (`now`). */
const TOP_LEVEL_BOUNDS: ReadonlyMap<string, ValueBound> = new Map(TOP_LEVEL.map((a) => [a.name, attributeBound(a)]));

/** The bound of attribute `group.field`, undefined when that is not an attribute (own properties only: `constructor.name` must not find Object's prototype). */
function groupAttributeBound(group: string, field: string): ValueBound | undefined {
  const g = Object.hasOwn(ATTRIBUTE_BOUNDS, group) ? ATTRIBUTE_BOUNDS[group] : undefined;
  return g !== undefined && Object.hasOwn(g, field) ? g[field] : undefined;
}

/** Worst-case cost of evaluating a node once, and the largest value it can produce. */
export interface CostEstimate {
  cost: number;
  bound: ValueBound;
}

function literalBound(v: unknown): ValueBound {
  if (typeof v === 'string') return str(v.length);
  if (v instanceof Uint8Array) return bound('string', v.length);
  return SCALAR;
}

/** What a value costs to touch completely (deep equality, conversion): its size plus its elements'. */
function weight(b: ValueBound): number {
  if (b.kind === 'list' || b.kind === 'map') {
    const elems = Number.isFinite(b.total) ? b.total : b.size * b.elem;
    return b.size + elems + (b.kind === 'map' ? b.size * b.value : 0);
  }
  return b.size;
}

/** The bound of one element (key) of a list (map) bound. */
function elementBound(b: ValueBound, size: number): ValueBound {
  if (b.kind === 'unknown') return { ...UNKNOWN, size };
  if (b.elemKind === 'string') return str(size);
  if (b.elemKind === 'scalar') return SCALAR;
  return { ...UNKNOWN, size };
}

/** The bound of a map value (or list element) read with `[]`. */
function indexBound(b: ValueBound): ValueBound {
  if (b.kind === 'map') {
    if (b.valueKind === 'string') return str(b.value);
    if (b.valueKind === 'scalar') return SCALAR;
    return { ...UNKNOWN, size: b.value };
  }
  if (b.kind === 'list') return elementBound(b, b.elem);
  return UNKNOWN;
}

type Vars = ReadonlyMap<string, ValueBound>;

/**
 * Sums f over the elements of an iterable bound: f(T) + (N-1)·f(0) when the element sizes have a
 * known total T, else N·f(largest element) (see "Soundness of the loop charge" above).
 */
function overElements(b: ValueBound, f: (elem: ValueBound) => number): number {
  const n = b.size;
  if (n <= 0) return 0;
  if (Number.isFinite(b.total) && b.total < n * b.elem) {
    return f(elementBound(b, b.total)) + (n - 1) * f(elementBound(b, 0));
  }
  return n * f(elementBound(b, b.elem));
}

function isLiteral(node: ASTNode): boolean {
  return node.op === 'value' || (node.op === 'list' && node.args.every(isLiteral));
}

function costOfComprehension(comp: ComprehensionParts, vars: Vars): CostEstimate {
  const recv = estimateNode(comp.receiver, vars);
  const r = recv.bound;
  // Iterating a string is a type error caught later; charge it as the unknown it is.
  const iterable = r.kind === 'list' || r.kind === 'map' ? r : { ...UNKNOWN, size: Math.max(r.size, 1) };
  const bodyAt = (elem: ValueBound): CostEstimate[] => {
    const inner = new Map(vars);
    inner.set(comp.iterVar, elem);
    return comp.body.map((b) => estimateNode(b, inner));
  };
  const perElement = (elem: ValueBound): number =>
    CEL_COST.iteration + bodyAt(elem).reduce((sum, e) => sum + e.cost, 0);
  const cost = CEL_COST.node + recv.cost + overElements(iterable, perElement);
  if (comp.name === 'map') {
    // The transform is the last body argument; the result has one element per input element.
    const transform = (elem: ValueBound): ValueBound => bodyAt(elem).at(-1)?.bound ?? UNKNOWN;
    const largest = transform(elementBound(iterable, iterable.elem));
    const total = overElements(iterable, (e) => transform(e).size);
    return { cost, bound: bound('list', iterable.size, { elem: largest.size, elemKind: largest.kind, total }) };
  }
  if (comp.name === 'filter') {
    return { cost, bound: iterable.kind === 'map' ? bound('list', iterable.size, { elem: iterable.elem, elemKind: iterable.elemKind, total: iterable.total }) : iterable };
  }
  return { cost, bound: SCALAR };
}

/** Cost and result of a function call, given its receiver (null for a global call) and arguments. */
function costOfCall(name: string, recv: ValueBound | null, args: readonly ValueBound[], argNodes: readonly ASTNode[]): CostEstimate {
  const r = recv ?? args[0] ?? SCALAR;
  const a0 = recv ? args[0] : args[1];
  const rs = r.size;
  const as = a0?.size ?? 0;
  const c = CEL_COST.char;
  switch (name) {
    case 'size':
      // Strings are measured in code points, which means a walk over the string.
      return { cost: r.kind === 'string' || r.kind === 'unknown' ? CEL_COST.walk * rs : 0, bound: SCALAR };
    case 'contains':
    case 'indexOf':
    case 'lastIndexOf':
      // V8's substring search: about 5 ns per character on adversarial needles (measured).
      return { cost: CEL_COST.search * (rs + as), bound: SCALAR };
    case 'startsWith':
    case 'endsWith':
      // Compares at most the argument's length.
      return { cost: c * as, bound: SCALAR };
    case 'lowerAscii':
    case 'upperAscii':
    case 'trim':
    case 'substring':
      return { cost: 2 * c * rs, bound: str(rs) };
    case 'split': {
      // `s.split(sep)` yields at most len(s)+1 parts whose lengths sum to at most len(s).
      const limitNode = argNodes[recv ? 1 : 2];
      const limit = limitNode?.op === 'value' && typeof limitNode.args === 'bigint' && limitNode.args >= 0n ? Number(limitNode.args) : null;
      const parts = limit ?? rs + 1;
      return { cost: c * (rs + as) + CEL_COST.element * parts, bound: bound('list', parts, { elem: rs, elemKind: 'string', total: rs }) };
    }
    case 'join': {
      const list = r.kind === 'list' ? r : UNKNOWN;
      const texts = Number.isFinite(list.total) ? list.total : list.size * list.elem;
      const out = texts + list.size * as;
      return { cost: c * out + CEL_COST.element * list.size, bound: str(out) };
    }
    case 'matchesRE2': {
      const literalPattern = argNodes[recv ? 0 : 1]?.op === 'value';
      return { cost: CEL_COST.regexChar * rs + (literalPattern ? 0 : CEL_COST.regexCompile * as), bound: SCALAR };
    }
    case 'globMatch':
      return { cost: c * (rs + as), bound: SCALAR };
    case 'replace': {
      // replace() refuses to build more than MAX_STRING_RESULT_LENGTH characters (functions-string.ts).
      const [from, to] = recv ? argNodes : argNodes.slice(1);
      const shrinks =
        from?.op === 'value' && to?.op === 'value' && typeof from.args === 'string' && typeof to.args === 'string' &&
        from.args !== '' && to.args.length <= from.args.length;
      const out = shrinks ? rs : MAX_STRING_RESULT_LENGTH;
      return { cost: CEL_COST.replace * rs + c * (as + out), bound: str(out) };
    }
    case 'charAt':
      // Walks at most `index` code points (functions-string.ts), never more than the string.
      return { cost: CEL_COST.walk * rs, bound: str(2) };
    case 'reverse':
      return { cost: CEL_COST.reverse * rs, bound: str(rs) };
    case 'string':
      return { cost: c * weight(r), bound: r.kind === 'string' ? r : str(r.kind === 'scalar' ? 64 : MAX_STRING_RESULT_LENGTH) };
    case 'dyn':
      return { cost: 0, bound: r };
    case 'has':
      return { cost: 0, bound: SCALAR };
    case 'int':
    case 'uint':
    case 'double':
    case 'bool':
    case 'timestamp':
    case 'duration':
    case 'isIP':
    case 'ip':
    case 'isCIDR':
    case 'cidr':
    case 'isSpiffe':
    case 'spiffe':
    case 'containsIP':
    case 'containsCIDR':
      // Parsers and address tests: linear in the text they read, constant-sized results.
      return { cost: c * (rs + as), bound: SCALAR };
    case 'bytes':
      return { cost: c * rs, bound: str(3 * rs) };
    default:
      // Accessors of parsed values (trustDomain(), prefixLength(), getHours(), ...) and anything
      // unforeseen: charged for everything they are given, returning the largest input.
      return { cost: c * (weight(r) + args.reduce((s, x) => s + weight(x), 0)), bound: { ...UNKNOWN } };
  }
}

function estimateNode(node: ASTNode, vars: Vars): CostEstimate {
  const comp = comprehensionOf(node);
  if (comp !== null) return costOfComprehension(comp, vars);
  const c = CEL_COST.char;
  switch (node.op) {
    case 'value':
      return { cost: CEL_COST.node, bound: literalBound(node.args) };
    case 'id': {
      const v = vars.get(node.args);
      return { cost: CEL_COST.node, bound: v ?? TOP_LEVEL_BOUNDS.get(node.args) ?? UNKNOWN };
    }
    case '.':
    case '.?': {
      const [obj, field] = node.args;
      if (obj.op === 'id' && !vars.has(obj.args)) {
        const attr = groupAttributeBound(obj.args, field);
        if (attr !== undefined) return { cost: 2 * CEL_COST.node, bound: attr };
      }
      const o = estimateNode(obj, vars);
      // A field of a map is an index by a constant key (`request.headers.x`).
      return { cost: o.cost + CEL_COST.node + c * field.length, bound: o.bound.kind === 'map' ? indexBound(o.bound) : { ...UNKNOWN } };
    }
    case '[]':
    case '[?]': {
      const [obj, key] = node.args;
      const o = estimateNode(obj, vars);
      const k = estimateNode(key, vars);
      return { cost: o.cost + k.cost + CEL_COST.node + c * k.bound.size, bound: indexBound(o.bound) };
    }
    case 'list': {
      let cost = CEL_COST.node;
      let elem = 0;
      let total = 0;
      let elemKind: ValueKind | null = null;
      for (const e of node.args) {
        const x = estimateNode(e, vars);
        cost += x.cost + CEL_COST.element;
        elem = Math.max(elem, x.bound.size);
        total += x.bound.size;
        elemKind = elemKind === null || elemKind === x.bound.kind ? x.bound.kind : 'unknown';
      }
      return { cost, bound: bound('list', node.args.length, { elem, elemKind: elemKind ?? 'unknown', total }) };
    }
    case 'map': {
      let cost = CEL_COST.node;
      let elem = 0;
      let total = 0;
      let value = 0;
      let elemKind: ValueKind | null = null;
      let valueKind: ValueKind | null = null;
      for (const [k, v] of node.args) {
        const kx = estimateNode(k, vars);
        const vx = estimateNode(v, vars);
        cost += kx.cost + vx.cost + CEL_COST.element + c * kx.bound.size;
        elem = Math.max(elem, kx.bound.size);
        total += kx.bound.size;
        value = Math.max(value, vx.bound.size);
        elemKind = elemKind === null || elemKind === kx.bound.kind ? kx.bound.kind : 'unknown';
        valueKind = valueKind === null || valueKind === vx.bound.kind ? vx.bound.kind : 'unknown';
      }
      return {
        cost,
        bound: bound('map', node.args.length, { elem, elemKind: elemKind ?? 'unknown', total, value, valueKind: valueKind ?? 'unknown' }),
      };
    }
    case 'call':
    case 'rcall': {
      const name = node.args[0];
      const recvNode = node.op === 'rcall' ? node.args[1] : null;
      const argNodes = node.op === 'rcall' ? node.args[2] : node.args[1];
      if (name === 'has') return { cost: 2 * CEL_COST.node, bound: SCALAR };
      let cost = CEL_COST.node;
      let recv: ValueBound | null = null;
      if (recvNode !== null) {
        const r = estimateNode(recvNode, vars);
        cost += r.cost;
        recv = r.bound;
      }
      const args: ValueBound[] = [];
      for (const a of argNodes) {
        const x = estimateNode(a, vars);
        cost += x.cost;
        args.push(x.bound);
      }
      const call = costOfCall(name, recv, args, argNodes);
      return { cost: cost + call.cost, bound: call.bound };
    }
    case '==':
    case '!=':
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const [a, b] = node.args;
      const x = estimateNode(a, vars);
      const y = estimateNode(b, vars);
      // A comparison stops at the shorter operand; against a literal that is the literal.
      const compare = isLiteral(a) ? weight(x.bound) : isLiteral(b) ? weight(y.bound) : weight(x.bound) + weight(y.bound);
      return { cost: CEL_COST.node + x.cost + y.cost + c * compare, bound: SCALAR };
    }
    case 'in': {
      const [a, b] = node.args;
      const x = estimateNode(a, vars);
      const y = estimateNode(b, vars);
      const coll = y.bound;
      let compare: number;
      if (coll.kind === 'map') {
        compare = x.bound.size; // a hash lookup reads the key once
      } else {
        // A list (or a value of unknown shape, charged as the largest list): each element is
        // compared, and each comparison stops at the shorter operand, so reads at most the element.
        const elems = Number.isFinite(coll.total) ? coll.total : coll.size * coll.elem;
        compare = coll.size * (CEL_COST.element / c) + elems;
      }
      return { cost: CEL_COST.node + x.cost + y.cost + c * compare, bound: SCALAR };
    }
    case '+': {
      const [a, b] = node.args;
      const x = estimateNode(a, vars);
      const y = estimateNode(b, vars);
      const cost = CEL_COST.node + x.cost + y.cost;
      if (x.bound.kind === 'list' || y.bound.kind === 'list') {
        const size = x.bound.size + y.bound.size;
        const out = bound('list', size, {
          elem: Math.max(x.bound.elem, y.bound.elem),
          elemKind: x.bound.elemKind === y.bound.elemKind ? x.bound.elemKind : 'unknown',
          total: x.bound.total + y.bound.total,
        });
        return { cost: cost + CEL_COST.element * size, bound: out };
      }
      if (x.bound.kind === 'string' || y.bound.kind === 'string' || x.bound.kind === 'unknown' || y.bound.kind === 'unknown') {
        const size = x.bound.size + y.bound.size;
        return { cost: cost + c * size, bound: str(size) };
      }
      return { cost, bound: SCALAR };
    }
    case '?:': {
      const [cond, yes, no] = node.args;
      const k = estimateNode(cond, vars);
      const y = estimateNode(yes, vars);
      const n = estimateNode(no, vars);
      return { cost: CEL_COST.node + k.cost + Math.max(y.cost, n.cost), bound: maxBound(y.bound, n.bound) };
    }
    default: {
      // &&, ||, !_, -_, arithmetic: every operand may be evaluated (CEL's commutative logic).
      let cost = CEL_COST.node;
      for (const ch of childNodes(node)) cost += estimateNode(ch, vars).cost;
      return { cost, bound: SCALAR };
    }
  }
}

function maxBound(a: ValueBound, b: ValueBound): ValueBound {
  if (a.kind !== b.kind) return { ...UNKNOWN, size: Math.max(a.size, b.size), elem: Math.max(a.elem, b.elem, MAX_HEADER_BYTES) };
  return {
    kind: a.kind,
    size: Math.max(a.size, b.size),
    elem: Math.max(a.elem, b.elem),
    elemKind: a.elemKind === b.elemKind ? a.elemKind : 'unknown',
    total: Math.max(a.total, b.total),
    value: Math.max(a.value, b.value),
    valueKind: a.valueKind === b.valueKind ? a.valueKind : 'unknown',
  };
}

/**
 * Worst-case cost of one evaluation of `ast` (see CEL_COST for the units), assuming every input
 * is as large as the wire allows: 64 KiB header values, 2,048 headers, policy variables of
 * unknown shape as large as a header.
 */
export function estimateCost(ast: ASTNode): number {
  return estimateNode(ast, new Map()).cost;
}

/** The largest value `ast` can evaluate to (see ValueBound), on the largest possible input. */
export function estimateValueBound(ast: ASTNode): ValueBound {
  return estimateNode(ast, new Map()).bound;
}

/**
 * Why a value of bound `b` could not be held in a policy variable (see UNKNOWN_VALUE_BOUND), or
 * null when it fits. Expressions reading `variables.x` assume the bound, so every expression is
 * held to it (a bool expression always fits).
 */
export function exceedsVariableBound(b: ValueBound): string | null {
  const u = UNKNOWN_VALUE_BOUND;
  const fmt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'unbounded');
  if (b.kind === 'scalar') return null;
  if (b.kind === 'string') return b.size > u.elem ? `a string of up to ${fmt(b.size)} characters` : null;
  if (b.size > u.size) return `up to ${fmt(b.size)} elements`;
  if (b.kind === 'unknown') return null;
  const texts = Number.isFinite(b.total) ? b.total : b.size * b.elem;
  if (b.elem > u.elem || texts > u.total) return `elements of up to ${fmt(texts)} characters together`;
  if (b.kind === 'map' && b.value > u.value) return `map values of up to ${fmt(b.value)} characters`;
  return null;
}

function explainCost(cost: number): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  return why(
    `its worst-case cost is ${fmt(cost)} units, more than the ${fmt(CEL_LIMITS.maxEstimatedCost)} allowed ` +
      `(a unit is about a nanosecond: the budget keeps one evaluation near ${fmt(CEL_LIMITS.maxEstimatedCost / 1e6)} ms). ` +
      'The estimate assumes the largest input the wire allows: any header or baggage value, :authority and ' +
      'policy variables may be 64 KiB, so a call on one reads 64 KiB, and a call inside all/exists/exists_one/map/filter ' +
      'runs once per element (a split of a 64 KiB header has up to 65,537 parts). ' +
      'Compute request-derived values once outside the loop (compare the element, not the whole header, inside it), ' +
      'compare with literals, iterate over list literals, or pass split() a limit',
  );
}
