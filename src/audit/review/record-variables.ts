/**
 * The variables an audit record declares to CEL for `waygate audit query --where`, and the kinds of
 * their fields: names and types only, no engine, so `audit query --help` lists them without
 * loading CEL (src/audit/review/record-cel.ts builds the environment and the activation from them).
 */
import type { AttributeFormat } from '../../policy/attributes.ts';
import { CEL_TYPE_OF_FORMAT, GROUPS, type Attribute } from '../../policy/attribute-tables.ts';

export type FieldKind = 'string' | 'int' | 'bool' | 'dyn' | 'map<string, string>' | `list<${string}>`;

/** How a record spells an attribute of each format: its CEL type, except timestamps, which a record holds as RFC 3339 text (src/audit/record.ts). */
const KIND_OF_FORMAT = { ...CEL_TYPE_OF_FORMAT, timestamp: 'string' } as Readonly<Record<AttributeFormat, FieldKind>>;
export const kindOf = (a: Attribute): FieldKind => KIND_OF_FORMAT[a.format];

/**
 * The evaluation input as the record holds it (the attribute catalogue's `record` layout): a
 * message type per nested group (`source` -> `waygate.audit.Source`), a variable per attribute of
 * a flat group (`traceId`, `headers`, `baggage`).
 */
export const typeName = (group: string): string => `waygate.audit.${group[0]!.toUpperCase()}${group.slice(1)}`;
export const INPUT_VARIABLES: readonly [string, string][] = GROUPS.flatMap((g): [string, string][] =>
  g.def.record === 'nested' ? [[g.name, typeName(g.name)]] : g.attributes.map((a) => [a.name, kindOf(a)]),
);

export const RULE_REF_TYPE = 'waygate.audit.RuleRef';

/** Declared record variables and their CEL types (also listed by `audit query --help`). */
export const RECORD_CEL_VARIABLES: readonly [string, string][] = [
  ['schema', 'int'],
  ['event', 'string'],
  ['time', 'string'],
  ['timestamp', 'google.protobuf.Timestamp'],
  ['decisionId', 'string'],
  ['connectionId', 'string'],
  ['streamId', 'int'],
  ['decision', 'string'],
  ['reason', 'string'],
  ['status', 'int'],
  ['policy', 'dyn'],
  ['rule', 'dyn'],
  ['dryRun', 'waygate.audit.DryRun'],
  ['audit', `list<${RULE_REF_TYPE}>`],
  ['evalErrors', 'list<waygate.audit.EvalError>'],
  ['snapshot', 'waygate.audit.Snapshot'],
  ...INPUT_VARIABLES,
  ['evalMicros', 'int'],
  ['upstream', 'waygate.audit.Upstream'],
  ['detail', 'string'],
  ['bytesSent', 'int'],
  ['bytesReceived', 'int'],
  ['durationMs', 'int'],
  ['closeReason', 'string'],
  ['protocol', 'string'],
  ['result', 'string'],
];
