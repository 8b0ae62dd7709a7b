/**
 * The audit record (docs/design.md §4): one JSON line per event, schema-versioned. `decision` for every
 * CONNECT, `close` for every tunnel end, `reload` for every policy load. A decision record holds the
 * full evaluation input (minus headers outside the allow-list), so `waygate audit replay` can
 * re-decide it against another policy set with the same engine. Where the record holds each
 * attribute is the catalogue's `record` layout (src/policy/attributes.ts): decisionRecord writes it,
 * recordedInput reads it back.
 */
import { WaygateError } from '../errors.ts';
import type { ATTRIBUTE_GROUPS } from '../policy/attributes.ts';
import { compileObjectBuilder, compileReader, GROUPS, inputAttributes, TOP_LEVEL, type Attribute, type FieldSource } from '../policy/attribute-tables.ts';
import type { DecisionContext, GroupFields, GroupName } from '../policy/context.ts';
import type { DryRunOutcome, Reason, RuleRef, Verdict } from '../policy/decision.ts';
import type { PolicyTestInput } from '../policy/model.ts';
import { DEFAULT_HEADER_AUDIT_POLICY, selectAuditHeaders, type HeaderAuditPolicy } from './redact.ts';

/** Bumped on any incompatible change; readers count records of other versions as unknown. */
export const AUDIT_SCHEMA_VERSION = 1;

type Groups = typeof ATTRIBUTE_GROUPS;
type NestedGroup = { [G in GroupName]: Groups[G]['record'] extends 'nested' ? G : never }[GroupName];
type FlatGroup = { [G in GroupName]: Groups[G]['record'] extends 'flat' ? G : never }[GroupName];
type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/**
 * The evaluation input as a decision record holds it: a `nested` group as an object under its name,
 * the attributes of a `flat` group as top-level fields (`traceId`, `headers`, `baggage`). Headers
 * are the allow-listed ones, secrets redacted as `[REDACTED]` (redact.ts).
 */
export type RecordInput = { [G in NestedGroup]: GroupFields<G> } & Intersection<{ [G in FlatGroup]: GroupFields<G> }[FlatGroup]>;

export type AuditSource = GroupFields<'source'>;
export type AuditDestination = GroupFields<'destination'>;

/** The fields of a decision record before its evaluation input, in record order. */
export interface DecisionRecordHead {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'decision';
  /** RFC 3339 with milliseconds; also the `now` the decision was taken with. */
  time: string;
  decisionId: string;
  connectionId: string;
  streamId: number;
  decision: Verdict;
  reason: Reason;
  /** HTTP status answered on the CONNECT (200, 400, 401/403, 503). */
  status: number;
  policy: string | null;
  rule: string | null;
  dryRun: DryRunOutcome | null;
  audit: RuleRef[];
  evalErrors: { policy: string; rule: string; message: string }[];
  snapshot: { version: number; hash: string };
}

/**
 * Where an allowed tunnel was sent (docs/design.md §6), with discovery: the endpoint picked and
 * how it was reached. On a refused upstream, what was tried (`principal` then `""`).
 */
export interface UpstreamRecord {
  /** The service the client addressed (`""` for a workload address or a direct dial). */
  service: string;
  /** The workload picked (`namespace/name`), `""` for a direct dial. */
  workload: string;
  /** `ip:port` the tunnel reaches (for HBONE: the CONNECT authority sent to the pod's ztunnel). */
  address: string;
  protocol: 'hbone' | 'tcp';
  /** The SPIFFE ID the destination presented and the gateway verified; `""` for TCP or a failed dial. */
  principal: string;
  /** Whether an HBONE tunnel rode a pooled connection that was already open. */
  reused: boolean;
  /** From the start of the dial to the destination's 200 (HBONE) or TCP connect; 0 when it failed. */
  connectMs: number;
}

/** The fields of a decision record after its evaluation input. */
export interface DecisionRecordTail {
  evalMicros: number;
  /** With discovery (or a direct dial it allowed): where the tunnel went or was to go. Absent otherwise. */
  upstream?: UpstreamRecord;
  /**
   * Why the transport refused after the policy allowed, in words an operator can act on: no
   * endpoint, identity mismatch, the status the destination answered (`upstream_failed`,
   * `upstream_denied`).
   */
  detail?: string;
}

export type DecisionRecord = DecisionRecordHead & RecordInput & DecisionRecordTail;

const HEAD_FIELDS: readonly (keyof DecisionRecordHead)[] = [
  'schema', 'event', 'time', 'decisionId', 'connectionId', 'streamId', 'decision', 'reason', 'status', 'policy', 'rule', 'dryRun', 'audit', 'evalErrors', 'snapshot',
];
// `upstream` and `detail` are undefined when absent, which JSON leaves out of the line.
const TAIL_FIELDS: readonly (keyof DecisionRecordTail)[] = ['evalMicros', 'upstream', 'detail'];

type Fields = DecisionRecordHead & DecisionRecordTail;

/** How a decision record writes a flat group's attribute: through its format's writer. */
function inputField(a: Attribute): FieldSource<Fields, DecisionContext, HeaderAuditPolicy> {
  if (a.format === 'header-map') {
    // Allow-listed, then redacted (redact.ts): a record never holds a credential.
    const read = compileReader<DecisionContext, Readonly<Record<string, string>>>(a);
    return (_, ctx, policy) => selectAuditHeaders(read(ctx), policy);
  }
  if (a.format === 'string-map') {
    // A copy: the context's map may be shared (ztunnel sends one baggage for every stream).
    const read = compileReader<DecisionContext, Readonly<Record<string, string>>>(a);
    return (_, ctx) => ({ ...read(ctx) });
  }
  return compileReader(a, { second: true }) as FieldSource<Fields, DecisionContext, HeaderAuditPolicy>;
}

// One object literal, fields in record order: a spread of the input into a literal would cost
// ~100 ns more and give the record a shape JSON.stringify serialises ~25% slower (Node 20).
const buildDecisionRecord = compileObjectBuilder<Fields, DecisionContext, DecisionRecord, HeaderAuditPolicy>('decisionRecord', [
  ...HEAD_FIELDS.map((k) => [k, { of: 'x', key: k }] as const),
  ...GROUPS.flatMap((g) =>
    g.def.record === 'nested' ? [[g.name, { of: 'y', key: g.name }] as const] : g.attributes.map((a) => [a.name, inputField(a)] as const),
  ),
  ...TAIL_FIELDS.map((k) => [k, { of: 'x', key: k }] as const),
]);

/**
 * A decision record: `fields`, and the evaluation input `ctx` laid out as the catalogue says.
 * Nested groups are the context's own objects (no copy: contexts are immutable); headers pass the
 * audit header policy. `fields.time` is the context's `now` (replay reads it back as such).
 */
export function decisionRecord(fields: Fields, ctx: DecisionContext, headers: HeaderAuditPolicy = DEFAULT_HEADER_AUDIT_POLICY): DecisionRecord {
  return buildDecisionRecord(fields, ctx, headers);
}

/**
 * What a decision record holds of the evaluation input, as a PolicyTestInput (`audit replay`
 * decides it with contextFromInput). Derived attributes are left out (the builder derives them
 * again); `now` is the record's `time`. A record without one of the nested groups was not written
 * by waygate: refused, rather than replayed as an empty (no-identity) value.
 */
export function recordedInput(r: DecisionRecord): PolicyTestInput {
  const rec = r as unknown as Record<string, unknown>;
  const input: Record<string, unknown> = {};
  for (const g of GROUPS) {
    const from = g.def.record === 'nested' ? rec[g.name] : rec;
    if (from === null || typeof from !== 'object' || Array.isArray(from)) {
      throw new WaygateError('WG_USAGE', `the decision record has no "${g.name}" object`);
    }
    const values: Record<string, unknown> = {};
    for (const a of inputAttributes(g)) {
      const v = (from as Record<string, unknown>)[a.name] ?? (a.def.recordFallback === undefined ? undefined : rec[a.def.recordFallback]);
      if (v !== undefined) values[a.name] = v;
    }
    input[g.name] = values;
  }
  for (const a of TOP_LEVEL) input[a.name] = rec[a.recordField];
  return input as PolicyTestInput;
}

export type CloseReason =
  | 'completed'        // both sides finished cleanly
  | 'client_reset'     // the peer reset the stream (other than NO_ERROR/CANCEL after EOF)
  | 'upstream_reset'   // the destination reset / errored
  | 'upstream_failed'  // dial failed (a decision record with 503 precedes it)
  | 'policy_changed'   // re-check after a snapshot swap denied the tunnel
  | 'draining'         // the drain deadline passed
  | 'idle_timeout'
  | 'session_closed'   // the HTTP/2 connection went away
  | 'audit_unavailable' // allowed, but refused: its decision record was not written in time (docs/operating.md)
  | 'error';

export interface CloseRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'close';
  time: string;
  decisionId: string;
  connectionId: string;
  streamId: number;
  source: AuditSource;
  destination: AuditDestination;
  /** Bytes sent to the client (destination -> client). */
  bytesSent: number;
  /** Bytes received from the client (client -> destination). */
  bytesReceived: number;
  durationMs: number;
  closeReason: CloseReason;
  /** How the tunnel reached its destination (absent for records written before discovery existed). */
  protocol?: 'hbone' | 'tcp';
  /** For policy_changed: the snapshot and rule that closed it. */
  policy?: string | null;
  rule?: string | null;
  snapshot?: { version: number; hash: string };
}

export interface ReloadRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'reload';
  time: string;
  result: 'applied' | 'rejected' | 'unchanged';
  snapshot: { version: number; hash: string };
  /** Snapshot that stays in force after a rejection. */
  previous?: { version: number; hash: string };
  policies: number;
  rules: number;
  errors: { file: string; line: number; col: number; path: string; code: string; message: string }[];
  trigger: 'startup' | 'watch' | 'signal' | 'admin';
  /** Tunnels closed by the re-check that followed this swap. */
  closedTunnels?: number;
}

/**
 * A load of the discovery source (docs/design.md §6: the mesh file, or the Kubernetes API),
 * written like a policy load (`event: reload`) and told apart by `source: mesh`; `file` or
 * `kubernetes` says which source. A rejected load keeps the previous snapshot (`previous`); a mesh
 * file's errors are at file:line:col.
 */
export interface MeshReloadRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'reload';
  source: 'mesh';
  time: string;
  result: 'applied' | 'rejected' | 'unchanged';
  snapshot: { version: number; hash: string };
  previous?: { version: number; hash: string };
  /** The mesh file loaded (the mesh-file source; absent for Kubernetes). */
  file?: string;
  /**
   * The Kubernetes source (`discovery.kubernetes`; absent for a mesh file): the API server and
   * namespaces, as the snapshot's `source` says, e.g. `kubernetes https://10.96.0.1:443 namespaces shop`.
   */
  kubernetes?: string;
  /** Of the snapshot in force. */
  services: number;
  workloads: number;
  errors: { file: string; line: number; col: number; path: string; code: string; message: string }[];
  trigger: 'startup' | 'watch' | 'signal' | 'admin';
}

export type AuditRecord = DecisionRecord | CloseRecord | ReloadRecord | MeshReloadRecord;
