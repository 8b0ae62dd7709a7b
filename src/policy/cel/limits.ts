/**
 * Load-time bounds on CEL expressions. CEL has no runtime cost budget in our engine (FACTS.md:
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
 *   64 KiB, DESIGN §2), so no expression reaches a million iterations (about 0.3 s, FACTS.md).
 */
import type { ASTNode } from '@marcbachmann/cel-js';

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
});

/** The largest a header-derived string can be: the whole CONNECT header list (DESIGN §2: 64 KiB). */
export const MAX_HEADER_BYTES = 64 * 1024;
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
      const [obj, field] = node.args;
      if (obj.op === 'id' && obj.args === 'request' && (field === 'headers' || field === 'baggage')) {
        return MAX_HEADER_ENTRIES;
      }
      return UNBOUNDED_ITERABLE_SIZE;
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

/** Checks the parsed AST against the bounds the parser does not enforce itself. */
export function checkStructuralLimits(ast: ASTNode): LimitViolation[] {
  const out: LimitViolation[] = [];
  const visit = (node: ASTNode, nesting: number): void => {
    const comp = comprehensionOf(node);
    if (comp !== null) {
      const { name, receiver, body } = comp;
      visit(receiver, nesting);
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
      for (const a of body) visit(a, depth);
      return;
    }
    for (const c of childNodes(node)) visit(c, nesting);
  };
  visit(ast, 0);
  if (out.length === 0) {
    const n = estimateIterations(ast);
    if (n > CEL_LIMITS.maxEstimatedIterations) {
      out.push({
        offset: ast.start,
        message: why(
          `its comprehensions can run up to ${n.toLocaleString('en-US')} iterations on the largest possible input, more than the ${CEL_LIMITS.maxEstimatedIterations.toLocaleString('en-US')} allowed (iterate over list literals, or avoid nesting over request data)`,
        ),
      });
    }
  }
  return out;
}

/**
 * A small insertion-ordered cache with a hard size bound (oldest entry evicted first). Used for
 * values parsed from strings (CIDRs, regexes) where the same literal recurs on every decision but
 * a non-literal argument must not grow memory without limit.
 */
export class BoundedCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();
  constructor(max: number) {
    this.#max = max;
  }
  get(key: K): V | undefined {
    return this.#map.get(key);
  }
  /** Stores and returns `value`. */
  set(key: K, value: V): V {
    if (this.#map.size >= this.#max) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, value);
    return value;
  }
  get size(): number {
    return this.#map.size;
  }
}
