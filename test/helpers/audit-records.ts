/**
 * Builds real audit decision records the way the data plane does: a DecisionContext decided by the
 * policy engine, then written out with the context as the record's input. Used by the replay test
 * so "records decided under set A" are genuinely A's decisions, not hand-written verdicts.
 */
import { AUDIT_SCHEMA_VERSION, type DecisionRecord } from '../../src/audit/record.ts';
import { selectAuditHeaders } from '../../src/audit/redact.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import type { Decision, Reason } from '../../src/policy/decision.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';
import type { DecisionContext } from '../../src/policy/context.ts';

/** The record for `ctx` decided as `decision` (the engine's answer). */
export function recordFromDecision(
  ctx: DecisionContext,
  decision: Decision,
  ids: { decisionId: string; streamId?: number },
): DecisionRecord {
  return {
    schema: AUDIT_SCHEMA_VERSION,
    event: 'decision',
    time: ctx.now.toISOString(),
    decisionId: ids.decisionId,
    connectionId: ctx.connection.id,
    streamId: ids.streamId ?? 1,
    decision: decision.decision,
    reason: decision.reason,
    status: decision.decision === 'allow' ? 200 : 401,
    policy: decision.policy,
    rule: decision.rule,
    dryRun: decision.dryRun,
    audit: decision.audit,
    evalErrors: decision.evalErrors.map((e) => ({ policy: e.policy, rule: e.rule, message: e.message })),
    snapshot: decision.snapshot,
    source: { ...ctx.source },
    destination: { ...ctx.destination },
    traceId: ctx.request.traceId,
    headers: selectAuditHeaders(ctx.request.headers),
    baggage: { ...ctx.request.baggage },
    connection: { ...ctx.connection },
    evalMicros: decision.evalMicros,
  };
}

/** A record the transport wrote without asking the engine (bad_request, upstream_failed, ...). */
export function transportRecord(input: PolicyTestInput, reason: Reason, decisionId: string, status: number): DecisionRecord {
  const ctx = contextFromInput(input);
  return {
    schema: AUDIT_SCHEMA_VERSION,
    event: 'decision',
    time: ctx.now.toISOString(),
    decisionId,
    connectionId: ctx.connection.id,
    streamId: 1,
    decision: 'deny',
    reason,
    status,
    policy: null,
    rule: null,
    dryRun: null,
    audit: [],
    evalErrors: [],
    snapshot: { version: 1, hash: 'n/a' },
    source: { ...ctx.source },
    destination: { ...ctx.destination },
    traceId: ctx.request.traceId,
    headers: selectAuditHeaders(ctx.request.headers),
    baggage: { ...ctx.request.baggage },
    connection: { ...ctx.connection },
    evalMicros: 0,
  };
}
