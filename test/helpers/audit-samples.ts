/** Small deterministic records of each event type (logger tests). */
import { AUDIT_SCHEMA_VERSION, type AuditRecord } from '../../src/audit/record.ts';

/** Record number `i`: decisions, with a close after every allowed one and a reload every 100. */
export function sampleRecord(i: number): AuditRecord {
  const time = new Date(Date.parse('2026-11-26T08:00:00Z') + i * 10).toISOString();
  const source = { principal: `spiffe://cluster.local/ns/prod/sa/app-${i % 7}`, trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: `app-${i % 7}`, ip: '10.1.0.9', port: 40000 + (i % 1000) };
  const destination = { authority: '10.0.1.7:8080', ip: '10.0.1.7', port: 8080, host: '', service: '', namespace: '', workload: '', principal: '' };
  if (i % 100 === 99) {
    return { schema: AUDIT_SCHEMA_VERSION, event: 'reload', time, result: 'applied', snapshot: { version: i, hash: `h${i}` }, policies: 3, rules: 5, errors: [], trigger: 'watch' };
  }
  if (i % 3 === 2) {
    return { schema: AUDIT_SCHEMA_VERSION, event: 'close', time, decisionId: `d${i - 1}`, connectionId: 'c1', streamId: i, source, destination, bytesSent: i * 3, bytesReceived: i, durationMs: i % 5000, closeReason: 'completed' };
  }
  return {
    schema: AUDIT_SCHEMA_VERSION, event: 'decision', time, decisionId: `d${i}`, connectionId: 'c1', streamId: i,
    decision: i % 2 ? 'deny' : 'allow', reason: i % 2 ? 'no_allow_match' : 'allowed', status: i % 2 ? 401 : 200,
    policy: i % 2 ? null : 'api', rule: i % 2 ? null : 'frontend', dryRun: null, audit: [], evalErrors: [],
    snapshot: { version: 1, hash: 'h' }, source, destination, traceId: '', headers: { 'user-agent': `ua "${i}" \u2028 </script>` },
    baggage: {}, connection: { id: 'c1', tlsVersion: 'TLSv1.3' }, evalMicros: 3,
  };
}
