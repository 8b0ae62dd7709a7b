/**
 * The attribute catalogue (attributes.ts) as reference text for people and editors: the parts of
 * the JSON Schemas under schema/ that list attributes, and the variable table of
 * docs/writing-policies.md. `npm run schema` (scripts/schema.ts) rewrites those parts of the
 * committed files; a test (test/policy/attributes.test.ts) fails when a committed file differs from
 * what this module makes of it, so the catalogue is the one place an attribute is described.
 *
 * Pure: text in, text out. The rest of each file is left as it is, formatted as the schemas are
 * (formatSchemaJson).
 */
import { LOWER_CASE_HEADER } from './documents.ts';
import { ATTRIBUTES, GROUPS, TOP_LEVEL, inputAttributes, type Attribute, type AttributeGroup } from './attribute-tables.ts';

/** RFC 3339 §5.6 date-time, as documents.ts checks it (the `T` may be a space or lower case). */
const RFC3339_PATTERN = '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$';

/** The files this module writes parts of, relative to the repository root. */
export const GENERATED_FILES = Object.freeze({
  policyTestSchema: 'schema/policy-test.schema.json',
  authorizationPolicySchema: 'schema/authorization-policy.schema.json',
  writingPolicies: 'docs/writing-policies.md',
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const isScalar = (v: unknown): boolean => v === null || typeof v !== 'object';

/**
 * JSON as the files under schema/ are written: two-space indentation; an array of scalars, and an
 * object of scalars (or arrays of them) without a description, on one line.
 */
export function formatSchemaJson(value: unknown): string {
  const fmt = (v: unknown, indent: string): string => {
    if (isScalar(v)) return JSON.stringify(v);
    const inner = `${indent}  `;
    if (Array.isArray(v)) {
      if (v.every(isScalar)) return `[${v.map((x) => JSON.stringify(x)).join(', ')}]`;
      return `[\n${v.map((x) => inner + fmt(x, inner)).join(',\n')}\n${indent}]`;
    }
    const entries = Object.entries(v as Record<string, unknown>);
    const flat = entries.every(([, x]) => isScalar(x) || (Array.isArray(x) && x.every(isScalar)));
    if (flat && !Object.hasOwn(v as object, 'description')) {
      return `{ ${entries.map(([k, x]) => `${JSON.stringify(k)}: ${fmt(x, inner)}`).join(', ')} }`;
    }
    return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${fmt(x, inner)}`).join(',\n')}\n${indent}}`;
  };
  return `${fmt(value, '')}\n`;
}

/** `a`, `a and b`, `a, b and c`. */
function words(list: readonly string[]): string {
  return list.length <= 1 ? (list[0] ?? '') : `${list.slice(0, -1).join(', ')} and ${list.at(-1)}`;
}

/** The attributes of `g` derived from attribute `from`. */
function derivedFrom(g: AttributeGroup, from: string): readonly Attribute[] {
  return g.attributes.filter((a) => a.def.derive?.from === from);
}

/** The derived attributes of every group, as `source.trustDomain, ... derive from source.principal` clauses. */
function derivations(): string[] {
  const out: string[] = [];
  for (const g of GROUPS) {
    for (const a of g.attributes) {
      const d = derivedFrom(g, a.name);
      if (d.length > 0) out.push(`${words(d.map((x) => x.path))} derive${d.length === 1 ? 's' : ''} from ${a.path}`);
    }
  }
  return out;
}

/** Short CEL type for a list of variables: nothing for strings. */
function shortType(a: Attribute): string {
  switch (a.format) {
    case 'port':
      return ' (int)';
    case 'header-map':
    case 'string-map':
      return ' (map)';
    case 'timestamp':
      return ' (timestamp)';
    default:
      return '';
  }
}

/** `source.principal, ..., source.port (int); destination.ip, ...; now (timestamp)`: every attribute by group. */
export function variableList(): string {
  return [...GROUPS.map((g) => g.attributes.map((a) => a.path + shortType(a)).join(', ')), ...TOP_LEVEL.map((a) => a.path + shortType(a))].join('; ');
}

/** The schema of one attribute in a PolicyTest input. */
function inputSchema(g: AttributeGroup | null, a: Attribute): Json {
  const cel = `CEL: ${a.path} (${a.celType}).`;
  const derived = g === null ? [] : derivedFrom(g, a.name);
  const also = derived.length > 0 ? ` ${words(derived.map((x) => x.path))} derive from it.` : '';
  const description = `${a.def.doc} ${cel}${also}`;
  switch (a.format) {
    case 'port':
      return { description, type: 'integer', minimum: a.def.minPort ?? 0, maximum: 65535 };
    case 'header-map':
      return { description, type: 'object', propertyNames: { pattern: LOWER_CASE_HEADER.source }, additionalProperties: { type: 'string' } };
    case 'string-map':
      return { description, type: 'object', additionalProperties: { type: 'string' } };
    case 'timestamp':
      return { description: `${description} RFC 3339; defaults to the Unix epoch so tests are deterministic.`, type: 'string', pattern: RFC3339_PATTERN };
    default:
      return { description, type: 'string' };
  }
}

/** `definitions.input` of the PolicyTest schema: the catalogue's groups without their derived attributes, and `now`. */
function policyTestInput(): Json {
  const properties: Record<string, Json> = {};
  for (const g of GROUPS) {
    properties[g.name] = {
      description: g.def.description,
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(inputAttributes(g).map((a) => [a.name, inputSchema(g, a)])),
    };
  }
  for (const a of TOP_LEVEL) properties[a.name] = inputSchema(null, a);
  return {
    description: `The evaluation input: what CEL rules see. Fields left out take their no-identity / empty value; ${derivations().join('; ')}.`,
    type: ['object', 'null'],
    additionalProperties: false,
    properties,
  };
}

const FUNCTIONS = 'Functions: ip(), cidr(), cidr(..).containsIP(..), spiffe(), RE2 regex, string helpers.';

/** The policy-test schema with its `definitions.input` made from the catalogue. */
export function renderPolicyTestSchema(current: string): string {
  const schema = JSON.parse(current) as { definitions: Record<string, Json> };
  schema.definitions.input = policyTestInput();
  return formatSchemaJson(schema);
}

/** The authorization-policy schema with the variable lists of `variables[].expression` and `rules[].when` made from the catalogue. */
export function renderAuthorizationPolicySchema(current: string): string {
  const schema = JSON.parse(current) as { definitions: Record<string, { properties: Record<string, { description: string }> }> };
  const vars = variableList();
  schema.definitions.variable!.properties.expression!.description = `CEL expression computing the value. Variables: ${vars}. ${FUNCTIONS}`;
  schema.definitions.rule!.properties.when!.description =
    'CEL boolean expression; the rule matches when it is true. Type-checked at load (a typo is a load error). An evaluation error ' +
    `fails closed: a match in a DENY rule, no match in an ALLOW rule. Variables: ${vars}; variables.<name>. ${FUNCTIONS}`;
  return formatSchemaJson(schema);
}

export const TABLE_BEGIN = '<!-- attributes: generated from src/policy/attributes.ts by `npm run schema` -->';
export const TABLE_END = '<!-- end of generated attributes -->';

/** The variable table of docs/writing-policies.md. */
export function attributeTable(): string {
  const rows = ATTRIBUTES.map((a) => `| \`${a.path}\` | \`${a.celType}\` | ${a.def.doc} |`);
  // Not an attribute: the environment declares it per policy (cel/environment.ts).
  const variables = "| `variables.<name>` | the variable's type | The policy's own `variables`. |";
  return ['| Variable | Type | Value |', '| --- | --- | --- |', ...rows, variables].join('\n');
}

/** docs/writing-policies.md with the text between TABLE_BEGIN and TABLE_END replaced by the table. */
export function renderWritingPolicies(current: string): string {
  const begin = current.indexOf(TABLE_BEGIN);
  const end = current.indexOf(TABLE_END);
  if (begin < 0 || end < begin) throw new Error(`${GENERATED_FILES.writingPolicies}: the markers ${TABLE_BEGIN} ... ${TABLE_END} are missing`);
  return `${current.slice(0, begin + TABLE_BEGIN.length)}\n${attributeTable()}\n${current.slice(end)}`;
}

/** Each generated file's renderer, by path. */
export const RENDERERS: Readonly<Record<string, (current: string) => string>> = Object.freeze({
  [GENERATED_FILES.policyTestSchema]: renderPolicyTestSchema,
  [GENERATED_FILES.authorizationPolicySchema]: renderAuthorizationPolicySchema,
  [GENERATED_FILES.writingPolicies]: renderWritingPolicies,
});
