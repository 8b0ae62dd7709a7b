/**
 * The decision context: everything a policy may read about one tunnel, as the attribute catalogue
 * (attributes.ts) lists it. Transport builds it from the socket, the peer certificate and the
 * CONNECT headers (connectionAttributes, streamAttributes, decisionContext below); `policy eval`,
 * `policy test` and `audit replay` build it from YAML/JSON (context-input.ts). The engine reads
 * nothing else, which is what makes a recorded decision replayable.
 *
 * Ports are plain numbers here; the engine converts them to CEL `int` (BigInt) once per decision
 * because the CEL engine refuses mixed int/double comparisons.
 */
import {
  ATTRIBUTE_GROUPS,
  TOP_LEVEL_ATTRIBUTES,
  type AttributeFormat,
  type ConnectionFacts,
  type FormatValue,
  type StreamFacts,
} from './attributes.ts';
import { compileObjectBuilder, GROUPS, TOP_LEVEL, type Attribute, type FieldSource } from './attribute-tables.ts';

type Groups = typeof ATTRIBUTE_GROUPS;
type TopLevel = typeof TOP_LEVEL_ATTRIBUTES;

/** A group of the catalogue: `source`, `destination`, ... */
export type GroupName = keyof Groups;
type AttributesOf<G extends GroupName> = Groups[G]['attributes'];

/** The format of each attribute of a group. */
export type GroupFormats<G extends GroupName> = { -readonly [A in keyof AttributesOf<G>]: FormatOf<AttributesOf<G>[A]> };
type FormatOf<D> = D extends { readonly format: infer F extends AttributeFormat } ? F : never;
/** The values of one group's attributes, e.g. `{ principal: string, ..., port: number }` for `source`. */
export type GroupFields<G extends GroupName> = { -readonly [A in keyof AttributesOf<G>]: FormatValue[FormatOf<AttributesOf<G>[A]>] };

/** Groups the transport reads once per connection / for every CONNECT. */
export type ConnectionGroupName = { [G in GroupName]: Groups[G]['scope'] extends 'connection' ? G : never }[GroupName];
export type StreamGroupName = { [G in GroupName]: Groups[G]['scope'] extends 'stream' ? G : never }[GroupName];

type TopLevelValues = { readonly [N in keyof TopLevel]: FormatValue[FormatOf<TopLevel[N]>] };

/** The full, immutable input of one decision: every group, and `now` (passed in: the engine never reads a clock). */
export type DecisionContext = { readonly [G in GroupName]: Readonly<GroupFields<G>> } & TopLevelValues;

/** The groups read once per connection, frozen: every context and record of the connection shares them. */
export type ConnectionAttributes = { readonly [G in ConnectionGroupName]: Readonly<GroupFields<G>> };
/** What one CONNECT adds to its connection's attributes. */
export type StreamAttributes = { readonly [G in StreamGroupName]: Readonly<GroupFields<G>> } & TopLevelValues;

function emptyValue(a: Attribute, now: Date): unknown {
  switch (a.format) {
    case 'port':
      return 0;
    case 'header-map':
    case 'string-map':
      return {};
    case 'timestamp':
      return now;
    default:
      return '';
  }
}

/** The no-identity / empty value of every attribute (policy test inputs): `""`, 0, empty maps. */
export function emptyContext(now: Date = new Date(0)): DecisionContext {
  const ctx: Record<string, unknown> = {};
  for (const g of GROUPS) ctx[g.name] = Object.fromEntries(g.attributes.map((a) => [a.name, emptyValue(a, now)]));
  for (const a of TOP_LEVEL) ctx[a.name] = emptyValue(a, now);
  return ctx as DecisionContext;
}

// One builder per group, reading the catalogue's `read` of each attribute from the facts.
const groupBuilders = new Map(
  GROUPS.map((g) => [g.name, compileObjectBuilder(`build_${g.name}`, g.attributes.map((a) => [a.name, a.def.read as FieldSource<unknown, unknown>] as const))]),
);
const builderOf = (name: string) => groupBuilders.get(name)!;

const buildConnectionAttributes = compileObjectBuilder<ConnectionFacts, undefined, ConnectionAttributes>(
  'connectionAttributes',
  GROUPS.filter((g) => g.def.scope === 'connection').map((g) => {
    const build = builderOf(g.name);
    return [g.name, (facts: ConnectionFacts) => Object.freeze(build(facts, undefined, undefined))] as const;
  }),
);

/** The attributes of a connection (source, connection), read from what its TLS handshake established. Once per connection. */
export function connectionAttributes(facts: ConnectionFacts): ConnectionAttributes {
  return buildConnectionAttributes(facts, undefined, undefined);
}

/** The attributes one CONNECT adds (destination, request, now). */
export const streamAttributes: (facts: StreamFacts) => StreamAttributes = (() => {
  const build = compileObjectBuilder<StreamFacts, undefined, StreamAttributes>('streamAttributes', [
    ...GROUPS.filter((g) => g.def.scope === 'stream').map((g) => [g.name, builderOf(g.name) as FieldSource<StreamFacts, undefined>] as const),
    ...TOP_LEVEL.map((a) => [a.name, a.def.read as FieldSource<StreamFacts, undefined>] as const),
  ]);
  return (facts: StreamFacts) => build(facts, undefined, undefined);
})();

const buildDecisionContext = compileObjectBuilder<ConnectionAttributes, StreamAttributes, DecisionContext>('decisionContext', [
  ...GROUPS.map((g) => [g.name, { of: g.def.scope === 'connection' ? 'x' : 'y', key: g.name }] as const),
  ...TOP_LEVEL.map((a) => [a.name, { of: 'y', key: a.name }] as const),
]);

/** The decision context of one CONNECT: its connection's attributes and its own, no copy of either. */
export function decisionContext(conn: ConnectionAttributes, stream: StreamAttributes): DecisionContext {
  return buildDecisionContext(conn, stream, undefined);
}
