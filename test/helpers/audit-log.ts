/**
 * Deterministic generator of realistic audit logs for the review tests and the benchmark: every
 * reason code, AUDIT and dry-run matches, close records for established tunnels, reload records,
 * and (optionally) malformed lines and a record of an unknown schema version. It also returns the
 * ground truth it generated, so tests compare the review CLI against what was written, not
 * against a second implementation of the same counting.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { AUDIT_SCHEMA_VERSION, type CloseRecord, type DecisionRecord, type ReloadRecord } from '../../src/audit/record.ts';
import type { Reason, RuleRef } from '../../src/policy/decision.ts';
import { seededRandom as rng } from '../../src/util/seeded-random.ts';

export interface GenerateOptions {
  /** Decision records to generate (close/reload records come on top). */
  decisions: number;
  seed?: number;
  /** First record time (ms since epoch); default 2026-11-26T08:00:00Z. */
  startMs?: number;
  /** Mean gap between decisions; default 250 ms. */
  stepMs?: number;
  /** Insert malformed lines and one unknown-schema record. Default true. */
  anomalies?: boolean;
  /**
   * Called with each decision record as it is written (the object its line is the JSON of), so a
   * test can count what it needs in the same pass instead of reading the log back.
   */
  onDecision?: (record: DecisionRecord) => void;
}

export interface GroundTruth {
  decisions: number;
  closes: number;
  reloads: number;
  allow: number;
  deny: number;
  byReason: Record<string, number>;
  deniedByPrincipal: Record<string, number>;
  malformedLines: number[];
  /** waygate's operational log lines mixed in (skipped and counted, not malformed). */
  opsLogLines: number[];
  unknownSchemaLines: number[];
  dryRunWouldDeny: number;
  auditMatches: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  lines: number;
}


const TD = 'cluster.local';
const WORKLOADS = [
  ['prod', 'frontend'],
  ['prod', 'api'],
  ['prod', 'worker'],
  ['prod', 'prometheus'],
  ['staging', 'frontend'],
  ['staging', 'api'],
  ['dev', 'sandbox'],
  ['dev', 'ci-runner'],
  ['batch', 'reporter'],
] as const;

const DESTS = [
  { ip: '10.0.1.7', port: 8080 },
  { ip: '10.0.2.9', port: 5432 },
  { ip: '10.0.3.4', port: 9090 },
  { ip: '10.0.1.8', port: 8443 },
] as const;

/** Reason -> [decision, status, policy, rule]; weights below make the mix realistic. */
const REASONS: { reason: Reason; weight: number; decision: 'allow' | 'deny'; status: number; policy: string | null; rule: string | null }[] = [
  { reason: 'allowed', weight: 60, decision: 'allow', status: 200, policy: 'api-from-frontend', rule: 'frontend' },
  { reason: 'allowed', weight: 12, decision: 'allow', status: 200, policy: 'database', rule: 'api-to-db' },
  { reason: 'allowed', weight: 6, decision: 'allow', status: 200, policy: 'metrics-scrape', rule: 'prometheus' },
  { reason: 'default_allow', weight: 2, decision: 'allow', status: 200, policy: null, rule: null },
  { reason: 'explicit_deny', weight: 6, decision: 'deny', status: 401, policy: 'deny-dev', rule: 'dev-namespace' },
  { reason: 'no_allow_match', weight: 5, decision: 'deny', status: 401, policy: null, rule: null },
  { reason: 'default_deny', weight: 3, decision: 'deny', status: 401, policy: null, rule: null },
  { reason: 'no_identity', weight: 1, decision: 'deny', status: 401, policy: null, rule: null },
  { reason: 'bad_request', weight: 1, decision: 'deny', status: 400, policy: null, rule: null },
  { reason: 'eval_error', weight: 1, decision: 'deny', status: 401, policy: 'database', rule: 'tenant-header' },
  { reason: 'destination_not_allowed', weight: 1, decision: 'deny', status: 503, policy: null, rule: null },
  { reason: 'upstream_failed', weight: 1, decision: 'deny', status: 503, policy: 'api-from-frontend', rule: 'frontend' },
  { reason: 'upstream_denied', weight: 0.5, decision: 'allow', status: 503, policy: 'api-from-frontend', rule: 'frontend' },
  { reason: 'policy_changed', weight: 0.5, decision: 'deny', status: 200, policy: 'deny-dev', rule: 'dev-namespace' },
  { reason: 'draining', weight: 0.5, decision: 'deny', status: 503, policy: null, rule: null },
  { reason: 'audit_unavailable', weight: 0.5, decision: 'deny', status: 503, policy: 'api-from-frontend', rule: null },
];
const TOTAL_WEIGHT = REASONS.reduce((s, r) => s + r.weight, 0);

const AUDIT_RULE: RuleRef = { policy: 'require-traceparent', rule: 'missing-traceparent', action: 'AUDIT', mode: 'Enforce' };
const DRY_RULE: RuleRef = { policy: 'tighten-database', rule: 'only-prod-api', action: 'DENY', mode: 'DryRun' };

/** Generates the log's lines (without trailing newlines) and the ground truth. */
export function* generateAuditLines(options: GenerateOptions, truth: GroundTruth = emptyTruth()): Generator<string, GroundTruth> {
  const rand = rng(options.seed ?? 42);
  const stepMs = options.stepMs ?? 250;
  let t = options.startMs ?? Date.parse('2026-11-26T08:00:00.000Z');
  const anomalies = options.anomalies ?? true;
  let lineNo = 0;
  const emit = (line: string) => {
    lineNo++;
    truth.lines = lineNo;
    return line;
  };
  const reload: ReloadRecord = {
    schema: AUDIT_SCHEMA_VERSION,
    event: 'reload',
    time: new Date(t).toISOString(),
    result: 'applied',
    snapshot: { version: 1, hash: 'sha256:a1b2c3' },
    policies: 7,
    rules: 9,
    errors: [],
    trigger: 'startup',
  };
  truth.reloads++;
  yield emit(JSON.stringify(reload));
  const anomalyAt = new Set<number>();
  if (anomalies) for (const f of [0.1, 0.35, 0.6, 0.85]) anomalyAt.add(Math.floor(options.decisions * f));
  for (let i = 0; i < options.decisions; i++) {
    t += Math.round(stepMs * 2 * rand());
    if (anomalyAt.has(i)) {
      const kind = [...anomalyAt].indexOf(i);
      if (kind === 0) {
        yield emit('{"schema":1,"event":"decision","time":"2026-11-26T08:'); // truncated mid-write
        truth.malformedLines.push(lineNo);
      } else if (kind === 1) {
        yield emit('this is not json');
        truth.malformedLines.push(lineNo);
      } else if (kind === 2) {
        yield emit(JSON.stringify({ schema: 2, event: 'decision', time: new Date(t).toISOString(), verdict: 'allow' }));
        truth.unknownSchemaLines.push(lineNo);
      } else {
        yield emit(JSON.stringify({ level: 30, time: t, msg: 'operational log line on the same stream' }));
        truth.opsLogLines.push(lineNo);
      }
    }
    let pick = rand() * TOTAL_WEIGHT;
    let spec = REASONS[0]!;
    for (const r of REASONS) {
      pick -= r.weight;
      if (pick <= 0) {
        spec = r;
        break;
      }
    }
    const w = WORKLOADS[Math.floor(rand() * WORKLOADS.length)]!;
    const noId = spec.reason === 'no_identity';
    const ns = spec.reason === 'explicit_deny' || spec.reason === 'policy_changed' ? 'dev' : w[0];
    const sa = w[1];
    const principal = noId ? '' : `spiffe://${TD}/ns/${ns}/sa/${sa}`;
    const dst = DESTS[Math.floor(rand() * DESTS.length)]!;
    const traceId = rand() < 0.8 ? Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16)).join('') : '';
    const audit: RuleRef[] = traceId === '' ? [AUDIT_RULE] : [];
    const dryApplies = dst.port === 5432;
    const dryDeny = dryApplies && !(ns === 'prod' && sa === 'api');
    const dryRun = dryApplies
      ? {
          decision: dryDeny ? ('deny' as const) : spec.decision,
          reason: dryDeny ? ('explicit_deny' as const) : ('allowed' as const),
          policy: dryDeny ? DRY_RULE.policy : spec.policy,
          rule: dryDeny ? DRY_RULE.rule : spec.rule,
          wouldChange: dryDeny && spec.decision === 'allow',
          matches: dryDeny ? [DRY_RULE] : [],
        }
      : null;
    const connectionId = `c${Math.floor(i / 8)}`;
    const rec: DecisionRecord = {
      schema: AUDIT_SCHEMA_VERSION,
      event: 'decision',
      time: new Date(t).toISOString(),
      decisionId: `d${i}`,
      connectionId,
      streamId: 1 + 2 * (i % 8),
      decision: spec.decision,
      reason: spec.reason,
      status: spec.status,
      policy: spec.policy,
      rule: spec.rule,
      dryRun,
      audit,
      evalErrors: spec.reason === 'eval_error' ? [{ policy: 'database', rule: 'tenant-header', message: 'no such key: x-tenant' }] : [],
      snapshot: { version: 1, hash: 'sha256:a1b2c3' },
      source: {
        principal,
        trustDomain: noId ? '' : TD,
        namespace: noId ? '' : ns,
        serviceAccount: noId ? '' : sa,
        ip: `10.1.${Math.floor(rand() * 4)}.${1 + Math.floor(rand() * 250)}`,
        port: 30000 + Math.floor(rand() * 30000),
      },
      destination: { authority: `${dst.ip}:${dst.port}`, ip: dst.ip, port: dst.port, host: '', service: '', namespace: '', workload: '', principal: '' },
      traceId,
      headers: traceId ? { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, baggage: `k8s.namespace.name=${ns}` } : {},
      baggage: noId ? {} : { 'k8s.namespace.name': ns, 'service.name': sa },
      connection: { id: connectionId, tlsVersion: 'TLSv1.3' },
      evalMicros: Math.round(2 + rand() * 40),
    };
    truth.decisions++;
    truth.byReason[spec.reason] = (truth.byReason[spec.reason] ?? 0) + 1;
    if (spec.decision === 'allow') truth.allow++;
    else {
      truth.deny++;
      const key = principal || '(no identity)';
      truth.deniedByPrincipal[key] = (truth.deniedByPrincipal[key] ?? 0) + 1;
    }
    if (dryDeny && spec.decision === 'allow') truth.dryRunWouldDeny++;
    for (const a of audit) truth.auditMatches[`${a.policy}/${a.rule}`] = (truth.auditMatches[`${a.policy}/${a.rule}`] ?? 0) + 1;
    options.onDecision?.(rec);
    yield emit(JSON.stringify(rec));
    if (spec.decision === 'allow' || spec.reason === 'policy_changed') {
      const durationMs = Math.round(Math.exp(rand() * 10));
      const close: CloseRecord = {
        schema: AUDIT_SCHEMA_VERSION,
        event: 'close',
        time: new Date(t + durationMs).toISOString(),
        decisionId: rec.decisionId,
        connectionId,
        streamId: rec.streamId,
        source: rec.source,
        destination: rec.destination,
        bytesSent: Math.floor(rand() * 100_000),
        bytesReceived: Math.floor(rand() * 20_000),
        durationMs,
        closeReason: spec.reason === 'policy_changed' ? 'policy_changed' : rand() < 0.95 ? 'completed' : 'client_reset',
      };
      truth.closes++;
      truth.bytesSent += close.bytesSent;
      truth.bytesReceived += close.bytesReceived;
      yield emit(JSON.stringify(close));
    }
  }
  return truth;
}

export function emptyTruth(): GroundTruth {
  return {
    decisions: 0,
    closes: 0,
    reloads: 0,
    allow: 0,
    deny: 0,
    byReason: {},
    deniedByPrincipal: {},
    malformedLines: [],
    opsLogLines: [],
    unknownSchemaLines: [],
    dryRunWouldDeny: 0,
    auditMatches: {},
    bytesSent: 0,
    bytesReceived: 0,
    lines: 0,
  };
}

/** Generates the whole log as one string (small logs for unit tests). */
export function generateAuditLog(options: GenerateOptions): { text: string; truth: GroundTruth } {
  const truth = emptyTruth();
  const lines = [...generateAuditLines(options, truth)];
  return { text: lines.join('\n') + '\n', truth };
}

/**
 * Streams a generated log to a file with backpressure (the benchmark's million-record logs). Lines
 * are encoded straight into 2 MiB buffers: a string grown line by line and converted per MiB cost
 * more than generating the lines (100,000 decisions are 137 MB).
 */
export async function writeAuditLog(path: string, options: GenerateOptions): Promise<GroundTruth> {
  const truth = emptyTruth();
  const out = createWriteStream(path);
  const CHUNK = 2 << 20;
  let buf = Buffer.allocUnsafe(CHUNK);
  let used = 0;
  for (const line of generateAuditLines(options, truth)) {
    // At most 3 UTF-8 bytes per UTF-16 unit, plus the newline.
    const most = line.length * 3 + 1;
    if (used + most > buf.length) {
      if (!out.write(buf.subarray(0, used))) await once(out, 'drain');
      buf = Buffer.allocUnsafe(Math.max(CHUNK, most));
      used = 0;
    }
    used += buf.write(line, used, 'utf8');
    buf[used++] = 0x0a;
  }
  out.end(buf.subarray(0, used));
  await once(out, 'finish');
  return truth;
}
