/**
 * The attribute catalogue (attributes.ts) as the tables and functions the rest of waygate uses,
 * built once when the modules load. Nothing here is specific to one attribute: adding one to the
 * catalogue changes what these tables hold, never this file.
 *
 * Generated code. The functions that run for every decision or CONNECT (an activation's message
 * classes, the transport's group builders, the cache's and the index's attribute readers) are
 * generated from the catalogue as the source text a person would write for it, and compiled once
 * with `new Function`: `this.port = BigInt(g.port)`, `{ ip: f[0](x), ... }`, `c.source.principal`.
 * A loop over the catalogue with computed names does the same work 5-10x slower (each keyed store
 * or load site sees every name and goes megamorphic: 100-190 ns per message object against 15-25 ns,
 * measured with Node 20). The text is built only from names checked to be identifiers (CEL needs
 * them to be: `source.principal` is a field selection) and from JSON-quoted strings.
 */
import {
  ATTRIBUTE_GROUPS,
  TOP_LEVEL_ATTRIBUTES,
  type AttributeDef,
  type AttributeFormat,
  type GroupDef,
  type IndexKeyKind,
} from './attributes.ts';

/** One attribute of the catalogue. */
export interface Attribute {
  /** As policies write it: `source.principal`; `now` for a top-level attribute. */
  readonly path: string;
  /** Its group, null for a top-level attribute. */
  readonly group: string | null;
  /** Its field name in the group (for a top-level attribute, its path). */
  readonly name: string;
  readonly format: AttributeFormat;
  /** CEL type, as the checker spells it. */
  readonly celType: string;
  readonly def: AttributeDef;
}

/** One group of the catalogue with its attributes in order. */
export interface AttributeGroup {
  readonly name: string;
  readonly def: GroupDef;
  readonly attributes: readonly Attribute[];
}

/** CEL type of each format. Timestamps are `google.protobuf.Timestamp`: cel-js crashes on a `timestamp` declaration, and it is the type CEL's `timestamp()` returns. */
export const CEL_TYPE_OF_FORMAT: Readonly<Record<AttributeFormat, string>> = Object.freeze({
  string: 'string',
  lowercase: 'string',
  'spiffe-id': 'string',
  ip: 'string',
  port: 'int',
  'header-map': 'map<string, string>',
  'string-map': 'map<string, string>',
  timestamp: 'google.protobuf.Timestamp',
});

/** The longest text of an IPv6 address with an IPv4 tail (RFC 4291 §2.2, 8 groups with a dotted quad). */
const MAX_IP_TEXT = 45;
/** SPIFFE-ID §2.3: a SPIFFE ID is at most 2,048 bytes. */
const MAX_SPIFFE_ID = 2048;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function attribute(group: string | null, name: string, def: AttributeDef): Attribute {
  if (!IDENTIFIER.test(name)) throw new Error(`attribute catalogue: "${name}" is not an identifier`);
  return Object.freeze({
    path: group === null ? name : `${group}.${name}`,
    group,
    name,
    format: def.format,
    celType: CEL_TYPE_OF_FORMAT[def.format],
    def,
  });
}

/** Every group, in catalogue order. */
export const GROUPS: readonly AttributeGroup[] = Object.freeze(
  Object.entries(ATTRIBUTE_GROUPS as Readonly<Record<string, GroupDef>>).map(([name, def]) => {
    if (!IDENTIFIER.test(name)) throw new Error(`attribute catalogue: group "${name}" is not an identifier`);
    const attributes = Object.entries(def.attributes).map(([a, d]) => attribute(name, a, d as AttributeDef));
    return Object.freeze({ name, def, attributes: Object.freeze(attributes) });
  }),
);

/** Attributes outside any group (`now`), each with the decision record field that holds it. */
export const TOP_LEVEL: readonly (Attribute & { readonly recordField: string })[] = Object.freeze(
  Object.entries(TOP_LEVEL_ATTRIBUTES as Readonly<Record<string, AttributeDef & { record: string }>>).map(([name, def]) =>
    Object.freeze({ ...attribute(null, name, def), recordField: def.record }),
  ),
);

/** Every attribute: the groups' in order, then the top-level ones. */
export const ATTRIBUTES: readonly Attribute[] = Object.freeze([...GROUPS.flatMap((g) => g.attributes), ...TOP_LEVEL]);

const BY_PATH: ReadonlyMap<string, Attribute> = new Map(ATTRIBUTES.map((a) => [a.path, a]));

/** The attribute at `path` (`source.principal`, `now`), undefined for anything else. */
export function attributeAt(path: string): Attribute | undefined {
  return BY_PATH.get(path);
}

/** Whether values of the format are maps (a constant key narrows a read to one entry). */
export function isMapFormat(format: AttributeFormat): boolean {
  return format === 'header-map' || format === 'string-map';
}

/** Whether values of the format are strings. */
export function isStringFormat(format: AttributeFormat): boolean {
  return format === 'string' || format === 'lowercase' || format === 'spiffe-id' || format === 'ip';
}

/** The longest string an attribute can hold (strings only; see AttributeDef.maxLength). */
export function maxLengthOf(a: Attribute): number {
  if (a.def.maxLength !== undefined) return a.def.maxLength;
  if (a.format === 'ip') return MAX_IP_TEXT;
  if (a.format === 'spiffe-id') return MAX_SPIFFE_ID;
  throw new Error(`attribute catalogue: ${a.path} (${a.format}) needs a maxLength`);
}

const INPUT_ATTRIBUTES = new WeakMap<AttributeGroup, readonly Attribute[]>();

/**
 * Attributes a PolicyTest input states (derived ones are computed from their source). Computed
 * once per group: replay and `audit suggest` ask for every record.
 */
export function inputAttributes(group: AttributeGroup): readonly Attribute[] {
  let list = INPUT_ATTRIBUTES.get(group);
  if (list === undefined) {
    list = Object.freeze(group.attributes.filter((a) => a.def.derive === undefined));
    INPUT_ATTRIBUTES.set(group, list);
  }
  return list;
}

/** The index key kinds each format admits: CIDR tests on addresses, affixes on strings (not addresses), equality on both and on ports. */
const INDEX_KINDS_OF_FORMAT: Readonly<Record<AttributeFormat, readonly IndexKeyKind[]>> = {
  string: ['equals', 'prefix', 'suffix'],
  lowercase: ['equals', 'prefix', 'suffix'],
  'spiffe-id': ['equals', 'prefix', 'suffix'],
  ip: ['equals', 'cidr'],
  port: ['equals'],
  'header-map': [],
  'string-map': [],
  timestamp: [],
};

/**
 * What is wrong with a catalogue, for whoever edits attributes.ts: checked when the modules load,
 * so a mistake there stops the process at once with a sentence saying which attribute and why.
 */
export function catalogueProblems(groups: readonly AttributeGroup[], topLevel: readonly Attribute[]): string[] {
  const out: string[] = [];
  const ranks = new Map<number, string>();
  for (const a of [...groups.flatMap((g) => g.attributes), ...topLevel]) {
    const d = a.def;
    if ((a.format === 'string' || a.format === 'lowercase') && d.maxLength === undefined) {
      out.push(`${a.path}: a ${a.format} attribute needs a maxLength (the cost model bounds every string)`);
    }
    if ((a.format === 'header-map' || a.format === 'string-map') && d.cache === true) {
      out.push(`${a.path}: a map cannot be a cache key as a whole; give the reason instead of true (constant-key reads are keyed anyway)`);
    }
    for (const k of d.index?.kinds ?? []) {
      if (!INDEX_KINDS_OF_FORMAT[a.format].includes(k)) out.push(`${a.path}: the index cannot key a ${a.format} attribute by ${k}`);
    }
    if (d.index !== undefined) {
      const other = ranks.get(d.index.rank);
      if (other !== undefined) out.push(`${a.path}: index rank ${d.index.rank} is also ${other}'s (ranks break ties, so they must differ)`);
      ranks.set(d.index.rank, a.path);
    }
    if (d.derive !== undefined) {
      const from = a.group === null ? undefined : groups.find((g) => g.name === a.group)?.attributes.find((x) => x.name === d.derive!.from);
      if (from?.format !== 'spiffe-id') out.push(`${a.path}: derives from "${d.derive.from}", which is not a spiffe-id attribute of its group`);
    }
  }
  return out;
}

{
  const problems = catalogueProblems(GROUPS, TOP_LEVEL);
  if (problems.length > 0) throw new Error(`attribute catalogue (src/policy/attributes.ts):\n  ${problems.join('\n  ')}`);
}

/** Attributes the rule index may key on, best-ranked first, and the key kinds each admits. */
export const INDEXED: readonly { readonly attribute: Attribute; readonly kinds: readonly IndexKeyKind[] }[] = Object.freeze(
  ATTRIBUTES.filter((a) => a.def.index !== undefined)
    .sort((x, y) => x.def.index!.rank - y.def.index!.rank)
    .map((a) => Object.freeze({ attribute: a, kinds: a.def.index!.kinds })),
);

// ---------------------------------------------------------------------------------------------
// Generated functions (see the header).

const quote = (s: string): string => JSON.stringify(s);

/** `c["source"]["principal"]`: the JavaScript expression reading an attribute from a context held in `c`. */
function access(a: Attribute, c: string): string {
  return a.group === null ? `${c}[${quote(a.name)}]` : `${c}[${quote(a.group)}][${quote(a.name)}]`;
}

/**
 * Where a field of a generated object comes from: a call `fn(x, y, z)`; the property `key` of the
 * builder's argument `x`, `y` or `z`; or, with `construct`, `new construct(x[key])`.
 */
export type FieldSource<X, Y, Z = undefined> =
  | ((x: X, y: Y, z: Z) => unknown)
  | { readonly of: 'x' | 'y' | 'z'; readonly key: string; readonly construct?: new (value: never) => unknown };

/**
 * A function building one object of fixed shape, `{ k0: f[0](x, y, z), k1: x.k1, k2: new f[2](x.k2) }`,
 * as an object literal would: every call site reads its own function, every object gets the same
 * hidden class.
 */
export function compileObjectBuilder<X, Y, T, Z = undefined>(
  name: string,
  fields: readonly (readonly [string, FieldSource<X, Y, Z>])[],
): (x: X, y: Y, z: Z) => T {
  if (!IDENTIFIER.test(name)) throw new Error(`compileObjectBuilder: "${name}" is not an identifier`);
  const body = fields
    .map(([k, from], i) => {
      if (typeof from === 'function') return `${quote(k)}: f[${i}](x, y, z)`;
      const read = `${from.of}[${quote(from.key)}]`;
      return `${quote(k)}: ${from.construct === undefined ? read : `new f[${i}](${read})`}`;
    })
    .join(', ');
  const make = new Function('f', `return function ${name}(x, y, z) { return { ${body} }; };`) as (f: unknown[]) => (x: X, y: Y, z: Z) => T;
  return make(fields.map(([, from]) => (typeof from === 'function' ? from : from.construct ?? null)));
}

/**
 * A class whose constructor copies the fields of a group object, each through its conversion if it
 * has one: `class CelSource { constructor(g) { this.principal = g.principal; this.port = f[5](g.port); } }`.
 */
export function compileCopyClass<T>(
  name: string,
  fields: readonly (readonly [string, ((v: never) => unknown) | null])[],
): new (g: object) => T {
  if (!IDENTIFIER.test(name)) throw new Error(`compileCopyClass: "${name}" is not an identifier`);
  const body = fields
    .map(([k, convert], i) => `this[${quote(k)}] = ${convert === null ? `g[${quote(k)}]` : `f[${i}](g[${quote(k)}])`};`)
    .join(' ');
  const make = new Function('f', `return class ${name} { constructor(g) { ${body} } };`) as (f: unknown[]) => new (g: object) => T;
  return make(fields.map(([, convert]) => convert));
}

/**
 * `(c) => c.source.principal`, or `String(c.destination.port)` with `asString` for a number. With
 * `second`, the context is the function's second argument: `(_, c) => c.source.principal`.
 */
export function compileReader<C, V>(a: Attribute, opts: { asString?: boolean; second?: boolean } = {}): (c: C) => V {
  const read = access(a, 'c');
  const body = opts.asString === true && a.format === 'port' ? `String(${read})` : read;
  return (opts.second === true ? new Function('_', 'c', `return ${body};`) : new Function('c', `return ${body};`)) as (c: C) => V;
}

/**
 * `(c, path) => { switch (path) { case "source.principal": return c.source.principal; ... } }` over
 * `attributes`, in their order; undefined for any other path.
 */
export function compileSwitchReader<C, V>(attributes: readonly Attribute[]): (c: C, path: string) => V {
  const cases = attributes.map((a) => `case ${quote(a.path)}: return ${access(a, 'c')};`).join(' ');
  return new Function('c', 'path', `switch (path) { ${cases} } return undefined;`) as (c: C, path: string) => V;
}
