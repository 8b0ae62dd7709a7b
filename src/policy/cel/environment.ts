/**
 * The CEL environment of docs/design.md §3: every attribute a policy may read (the catalogue,
 * ../attributes.ts), with exact types, so that a typo or a type mismatch is a load error, never a
 * runtime surprise.
 *
 * Representation (measured, see the helper report): each attribute group is a registered message
 * type with a constructor (`registerType(name, {ctor, fields})`) and the activation holds
 * instances of those classes, built once per decision. cel-js's `registerVariable({schema})`
 * would convert a plain object into a fresh Map on every evaluation that touches the variable,
 * which cost 1.2-1.6x more per rule. The classes and the activation builder are generated from
 * the catalogue (../attribute-tables.ts) as the code one would write by hand for them.
 */
import { Environment } from '@marcbachmann/cel-js';
import type { AttributeFormat, FormatValue } from '../attributes.ts';
import {
  CEL_TYPE_OF_FORMAT,
  compileCopyClass,
  compileObjectBuilder,
  GROUPS,
  TOP_LEVEL,
  type FieldSource,
} from '../attribute-tables.ts';
import type { DecisionContext, GroupFields, GroupFormats, GroupName } from '../context.ts';
import type { Activation } from './compiled.ts';
import { registerNetFunctions } from './functions-net.ts';
import { registerRegexFunctions } from './functions-regex.ts';
import { registerSpiffeFunctions } from './functions-spiffe.ts';
import { registerStringFunctions } from './functions-string.ts';
import { CEL_LIMITS } from './limits.ts';

/**
 * A header or baggage map as a CEL map value. cel-js types an object by its `constructor`
 * property, so a peer-chosen key named `constructor` (an own property shadowing the prototype's)
 * would make every expression touching the map fail; such maps become a `Map`, which cel-js
 * reads by `get()`. Other maps are passed through untouched (no copy per decision).
 */
export function celStringMap(m: Readonly<Record<string, string>>): Readonly<Record<string, string>> | ReadonlyMap<string, string> {
  return Object.hasOwn(m, 'constructor') ? new Map(Object.entries(m)) : m;
}

/** The CEL value of an attribute of each format (ports are CEL `int`, hence BigInt). */
interface CelValueOfFormat extends Omit<FormatValue, 'port' | 'header-map' | 'string-map'> {
  port: bigint;
  'header-map': Readonly<Record<string, string>> | ReadonlyMap<string, string>;
  'string-map': Readonly<Record<string, string>> | ReadonlyMap<string, string>;
}

/** The CEL message value of a group, e.g. `waygate.Source`. */
export type CelGroup<G extends GroupName> = { readonly [A in keyof GroupFormats<G>]: CelValueOfFormat[GroupFormats<G>[A]] };

/** How a context value becomes a CEL value, per format (null: as it is). */
const TO_CEL: Readonly<Record<AttributeFormat, ((v: never) => unknown) | null>> = {
  string: null,
  lowercase: null,
  'spiffe-id': null,
  ip: null,
  port: BigInt as (v: never) => unknown,
  'header-map': celStringMap as (v: never) => unknown,
  'string-map': celStringMap as (v: never) => unknown,
  timestamp: null,
};

const className = (group: string): string => `Cel${group[0]!.toUpperCase()}${group.slice(1)}`;

/** The message class of each group (`CelSource` for `source`): its constructor copies a context group, converting values to CEL. */
export const CEL_MESSAGE_CLASSES: Readonly<Record<string, new (g: object) => object>> = Object.freeze(
  Object.fromEntries(GROUPS.map((g) => [g.name, compileCopyClass<object>(className(g.name), g.attributes.map((a) => [a.name, TO_CEL[a.format]] as const))])),
);

/** The message classes by name, for tests and `policy eval --explain` output. */
export const CelSource = CEL_MESSAGE_CLASSES.source as new (g: GroupFields<'source'>) => CelGroup<'source'>;
export type CelSource = CelGroup<'source'>;
export const CelDestination = CEL_MESSAGE_CLASSES.destination as new (g: GroupFields<'destination'>) => CelGroup<'destination'>;
export type CelDestination = CelGroup<'destination'>;

/**
 * Every group and its fields, with CEL types (docs/design.md §3). Top-level attributes (`now`) are
 * variables of their own (NOW_TYPE).
 */
export const ATTRIBUTE_SCHEMA: Readonly<Record<string, { type: string; ctor: new (g: object) => object; fields: Readonly<Record<string, string>>; description: string }>> =
  Object.freeze(
    Object.fromEntries(
      GROUPS.map((g) => [
        g.name,
        Object.freeze({
          type: g.def.celType,
          ctor: CEL_MESSAGE_CLASSES[g.name]!,
          fields: Object.freeze(Object.fromEntries(g.attributes.map((a) => [a.name, a.celType]))),
          description: g.def.description,
        }),
      ]),
    ),
  );

export const NOW_TYPE = CEL_TYPE_OF_FORMAT.timestamp;
/** The variable holding a policy's named values (`variables.<name>`). */
export const VARIABLES_NAME = 'variables';
const VARIABLES_TYPE = 'waygate.PolicyVariables';

/** Top-level names a policy expression may reference, for "did you mean" suggestions. */
export function attributeNames(): string[] {
  return [...Object.keys(ATTRIBUTE_SCHEMA), ...TOP_LEVEL.map((a) => a.name), VARIABLES_NAME];
}

/**
 * Builds the environment every policy expression is checked against: the attributes of docs/design.md §3,
 * the waygate functions, and the parser limits. Build it once; it is frozen by the first clone.
 */
export function createBaseEnvironment(): Environment {
  const env = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: true,
    enableOptionalTypes: false,
    limits: {
      maxAstNodes: CEL_LIMITS.maxAstNodes,
      maxDepth: CEL_LIMITS.maxDepth,
      maxListElements: CEL_LIMITS.maxListElements,
      maxMapEntries: CEL_LIMITS.maxMapEntries,
      maxCallArguments: CEL_LIMITS.maxCallArguments,
    },
  });
  for (const [name, s] of Object.entries(ATTRIBUTE_SCHEMA)) {
    env.registerType(s.type, { ctor: s.ctor, fields: { ...s.fields } });
    env.registerVariable(name, s.type, { description: s.description });
  }
  for (const a of TOP_LEVEL) env.registerVariable(a.name, a.celType, { description: a.def.doc });
  registerNetFunctions(env);
  registerSpiffeFunctions(env);
  registerRegexFunctions(env);
  registerStringFunctions(env);
  return env;
}

const buildActivation = compileObjectBuilder<DecisionContext, undefined, Activation>('toActivation', [
  ...GROUPS.map((g) => [g.name, { of: 'x', key: g.name, construct: CEL_MESSAGE_CLASSES[g.name]! }] as const satisfies readonly [string, FieldSource<DecisionContext, undefined>]),
  ...TOP_LEVEL.map((a) => [a.name, { of: 'x', key: a.name }] as const),
]);

/**
 * The activation for one decision (docs/design.md §3 attributes as CEL values, ports as BigInt). Build it
 * once per decision and reuse it for every expression; the engine adds `variables` per policy
 * with `policyVariablesValue`.
 */
export function toActivation(ctx: DecisionContext): Activation {
  return buildActivation(ctx, undefined, undefined);
}

/** A policy variable as the environment sees it: its name and its checked CEL type. */
export interface PolicyVariableType {
  name: string;
  /** CEL type as reported by check(), e.g. `bool`, `string`, `list<string>`, `net.CIDR`. */
  type: string;
}

const variablesCtors = new WeakMap<Environment, new () => object>();

/**
 * Clones `base` and declares `variables` as a message whose fields are the given policy variables,
 * so `variables.prod` type-checks and `variables.prdo` is a load error. To let a variable use
 * earlier ones, call this with the variables declared so far (each call clones `base` afresh).
 */
export function createPolicyEnvironment(base: Environment, variables: readonly PolicyVariableType[]): Environment {
  const env = base.clone();
  const fields: Record<string, string> = Object.create(null);
  for (const v of variables) fields[v.name] = v.type;
  // One class per environment: cel-js finds a value's message type by its constructor.
  const Ctor = class PolicyVariables {};
  env.registerType(VARIABLES_TYPE, { ctor: Ctor, fields });
  env.registerVariable(VARIABLES_NAME, VARIABLES_TYPE, {
    description: "The policy's named values (spec.variables).",
  });
  variablesCtors.set(env, Ctor);
  return env;
}

/**
 * The `variables` value for an activation evaluated in `env` (from createPolicyEnvironment):
 * an instance of that environment's variables type holding `values` (variable name -> CEL value).
 */
export function policyVariablesValue(env: Environment, values: Readonly<Record<string, unknown>>): object {
  const Ctor = variablesCtors.get(env);
  if (Ctor === undefined) throw new Error('policyVariablesValue: environment was not made by createPolicyEnvironment');
  return Object.assign(new Ctor(), values);
}
