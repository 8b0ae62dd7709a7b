/**
 * The CEL environment of DESIGN §3: every attribute a policy may read, with exact types, so that a
 * typo or a type mismatch is a load error, never a runtime surprise.
 *
 * Representation (measured, see the helper report): each attribute group is a registered message
 * type with a constructor (`registerType(name, {ctor, fields})`) and the activation holds
 * instances of those classes, built once per decision. cel-js's `registerVariable({schema})`
 * would convert a plain object into a fresh Map on every evaluation that touches the variable,
 * which cost 1.2-1.6x more per rule.
 */
import { Environment } from '@marcbachmann/cel-js';
import type {
  ConnectionAttributes,
  DecisionContext,
  DestinationAttributes,
  RequestAttributes,
  SourceAttributes,
} from '../context.ts';
import type { Activation } from './compiled.ts';
import { registerNetFunctions } from './functions-net.ts';
import { registerRegexFunctions } from './functions-regex.ts';
import { registerSpiffeFunctions } from './functions-spiffe.ts';
import { registerStringFunctions } from './functions-string.ts';
import { CEL_LIMITS } from './limits.ts';

/** CEL `waygate.Source`: the verified peer (ports are CEL `int`, hence BigInt). */
export class CelSource {
  readonly principal: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly ip: string;
  readonly port: bigint;
  constructor(s: Readonly<SourceAttributes>) {
    this.principal = s.principal;
    this.trustDomain = s.trustDomain;
    this.namespace = s.namespace;
    this.serviceAccount = s.serviceAccount;
    this.ip = s.ip;
    this.port = BigInt(s.port);
  }
}

/** CEL `waygate.Destination`. */
export class CelDestination {
  readonly ip: string;
  readonly host: string;
  readonly port: bigint;
  readonly authority: string;
  constructor(d: Readonly<DestinationAttributes>) {
    this.ip = d.ip;
    this.host = d.host;
    this.port = BigInt(d.port);
    this.authority = d.authority;
  }
}

/**
 * A header or baggage map as a CEL map value. cel-js types an object by its `constructor`
 * property, so a peer-chosen key named `constructor` (an own property shadowing the prototype's)
 * would make every expression touching the map fail; such maps become a `Map`, which cel-js
 * reads by `get()`. Other maps are passed through untouched (no copy per decision).
 */
export function celStringMap(m: Readonly<Record<string, string>>): Readonly<Record<string, string>> | ReadonlyMap<string, string> {
  return Object.hasOwn(m, 'constructor') ? new Map(Object.entries(m)) : m;
}

/** CEL `waygate.Request`: the CONNECT request's informational headers. */
export class CelRequest {
  readonly headers: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
  readonly baggage: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
  readonly traceId: string;
  constructor(r: Readonly<RequestAttributes>) {
    this.headers = celStringMap(r.headers);
    this.baggage = celStringMap(r.baggage);
    this.traceId = r.traceId;
  }
}

/** CEL `waygate.Connection`. */
export class CelConnection {
  readonly id: string;
  readonly tlsVersion: string;
  constructor(c: Readonly<ConnectionAttributes>) {
    this.id = c.id;
    this.tlsVersion = c.tlsVersion;
  }
}

/**
 * Every top-level variable and its fields, with CEL types (DESIGN §3). `now` is declared as
 * `google.protobuf.Timestamp` because cel-js crashes on a `timestamp` field declaration (FACTS.md);
 * it is the same type CEL's `timestamp()` returns.
 */
export const ATTRIBUTE_SCHEMA = Object.freeze({
  source: {
    type: 'waygate.Source',
    ctor: CelSource,
    fields: {
      principal: 'string',
      trustDomain: 'string',
      namespace: 'string',
      serviceAccount: 'string',
      ip: 'string',
      port: 'int',
    },
    description: 'The verified peer: SPIFFE ID and its parts ("" without identity), socket address.',
  },
  destination: {
    type: 'waygate.Destination',
    ctor: CelDestination,
    fields: { ip: 'string', host: 'string', port: 'int', authority: 'string' },
    description: 'Where the tunnel goes: the CONNECT :authority and its parts.',
  },
  request: {
    type: 'waygate.Request',
    ctor: CelRequest,
    fields: { headers: 'map<string, string>', baggage: 'map<string, string>', traceId: 'string' },
    description: 'CONNECT headers (lower-case names), W3C baggage members, W3C trace id.',
  },
  connection: {
    type: 'waygate.Connection',
    ctor: CelConnection,
    fields: { id: 'string', tlsVersion: 'string' },
    description: 'The HTTP/2 connection carrying the tunnel.',
  },
} as const);

export const NOW_TYPE = 'google.protobuf.Timestamp';
/** The variable holding a policy's named values (`variables.<name>`). */
export const VARIABLES_NAME = 'variables';
const VARIABLES_TYPE = 'waygate.PolicyVariables';

/** Top-level names a policy expression may reference, for "did you mean" suggestions. */
export function attributeNames(): string[] {
  return [...Object.keys(ATTRIBUTE_SCHEMA), 'now', VARIABLES_NAME];
}

/** Field names of a top-level attribute group (empty for unknown names). */
export function attributeFields(name: string): string[] {
  const s = (ATTRIBUTE_SCHEMA as Record<string, { fields: Record<string, string> }>)[name];
  return s ? Object.keys(s.fields) : [];
}

/**
 * Builds the environment every policy expression is checked against: the attributes of DESIGN §3,
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
  env.registerVariable('now', NOW_TYPE, { description: 'Decision time.' });
  registerNetFunctions(env);
  registerSpiffeFunctions(env);
  registerRegexFunctions(env);
  registerStringFunctions(env);
  return env;
}

/**
 * The activation for one decision (DESIGN §3 attributes as CEL values, ports as BigInt). Build it
 * once per decision and reuse it for every expression; the engine adds `variables` per policy
 * with `policyVariablesValue`.
 */
export function toActivation(ctx: DecisionContext): Activation {
  return {
    source: new CelSource(ctx.source),
    destination: new CelDestination(ctx.destination),
    request: new CelRequest(ctx.request),
    connection: new CelConnection(ctx.connection),
    now: ctx.now,
  };
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
