/**
 * The traffic generator (examples/traffic/) against a real `waygate serve` process on the example
 * policies: every scenario gets the answer it expects, and the audit log it leaves is what the
 * sample log (examples/audit/) and the review tests rely on: every reason code the default config
 * can produce, AUDIT and dry-run matches where the policies say, one close record per tunnel with
 * the echoed bytes counted, and nothing at all for a client whose TLS handshake failed.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CloseRecord, DecisionRecord } from '../../src/audit/record.ts';
import { startEchoBackends, type EchoBackends } from '../../examples/traffic/echo-backend.ts';
import { REPO_ROOT, splitHostPort } from '../../examples/traffic/gateway-process.ts';
import { startServe, type StartedServe } from '../helpers/serve.ts';
import { runTraffic, type TrafficResult } from '../../examples/traffic/generate.ts';
import { DEFAULT_TARGETS, planMix, SCENARIOS, seededRandom } from '../../examples/traffic/scenarios.ts';

test('the mix is seeded and lists every scenario at least once', () => {
  const a = planMix(48, seededRandom(42)).map((s) => s.name);
  const b = planMix(48, seededRandom(42)).map((s) => s.name);
  const c = planMix(48, seededRandom(43)).map((s) => s.name);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.equal(a.length, 48);
  assert.deepEqual(new Set(a), new Set(SCENARIOS.map((s) => s.name)));
  // Fewer requests than scenarios: a prefix of the list, still seeded.
  assert.equal(planMix(3, seededRandom(1)).length, 3);
});

describe('traffic generator against the example policies', () => {
  let work: string;
  let backends: EchoBackends;
  let gateway: StartedServe;
  let result: TrafficResult;
  let decisions: DecisionRecord[];
  let closes: CloseRecord[];
  const count = 48;

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'waygate-traffic-'));
    cpSync(path.join(REPO_ROOT, 'policies'), path.join(work, 'policies'), { recursive: true });
    backends = await startEchoBackends({ ports: [DEFAULT_TARGETS.apiPort, DEFAULT_TARGETS.dbPort, DEFAULT_TARGETS.metricsPort] });
    gateway = await startServe([
      '--listen', '127.0.0.1:0', '--ready-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0',
      '--admin-address', '127.0.0.1:0', '--audit-log', path.join(work, 'audit.jsonl'), '--no-watch',
      '--drain-timeout-ms', '2000',
    ], { cwd: work });
    result = await runTraffic({
      gateway: splitHostPort(gateway.addresses.hbone),
      pkiDir: path.join(work, '.waygate', 'pki'),
      targets: { ...DEFAULT_TARGETS, backendHost: backends.host },
      count,
      seed: 42,
      concurrency: 4,
    });
    const code = await gateway.stop('SIGTERM');
    assert.equal(code, 0, gateway.stderr());
    const records = readFileSync(path.join(work, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    decisions = records.filter((r): r is DecisionRecord => r.event === 'decision');
    closes = records.filter((r): r is CloseRecord => r.event === 'close');
  });

  after(async () => {
    await gateway?.stop('SIGKILL');
    await backends?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('every scenario got the status it expects, and every echo came back intact', () => {
    assert.deepEqual(result.problems, []);
    assert.equal(result.scenarios.reduce((s, t) => s + t.sent, 0), count);
    for (const t of result.scenarios) assert.ok(t.sent > 0, `${t.name} ran at least once`);
    assert.ok(result.bytesEchoed > 0);
  });

  test('one decision record per CONNECT; none for the failed handshakes', () => {
    const handshakes = result.scenarios
      .filter((t) => t.expected === 'handshake')
      .reduce((s, t) => s + t.sent, 0);
    assert.equal(decisions.length, count - handshakes);
    assert.ok(decisions.every((d) => d.source.principal !== 'spiffe://other.example/ns/prod/sa/frontend'));
  });

  test('the log holds exactly the reason codes the scenarios aim at', () => {
    const expected = new Set(SCENARIOS.map((s) => s.expectReason).filter((r): r is string => r !== null));
    assert.deepEqual(new Set(decisions.map((d) => d.reason)), expected);
  });

  test('each reason comes with its status, rule and evidence', () => {
    for (const d of decisions) {
      const where = `${d.reason} ${d.source.principal || '(no identity)'} -> ${d.destination.authority}`;
      switch (d.reason) {
        case 'allowed':
          assert.equal(d.status, 200, where);
          assert.ok(d.policy && d.rule, where);
          break;
        case 'no_allow_match':
        case 'default_deny':
          assert.equal(d.status, 401, where);
          assert.equal(d.policy, null, where);
          break;
        case 'explicit_deny':
          assert.equal(d.status, 401, where);
          assert.ok(['deny-dev/dev-namespace', 'deny-link-local/link-local-destination'].includes(`${d.policy}/${d.rule}`), where);
          break;
        case 'bad_request':
          assert.equal(d.status, 400, where);
          assert.equal(d.policy, null, where);
          break;
        case 'destination_not_allowed':
          // Allowed by policy but outside the loopback-only networks: never dialed.
          assert.equal(d.status, 401, where);
          assert.equal(d.destination.ip, '10.0.1.7', where);
          break;
        case 'upstream_failed':
          assert.equal(d.status, 503, where);
          assert.equal(d.decision, 'allow', where);
          // A closed loopback port, or a service name with no configured route (no upstream).
          assert.ok(d.destination.port === DEFAULT_TARGETS.closedPort || d.destination.host === 'api.prod.svc.cluster.local', where);
          break;
        case 'no_identity':
          assert.equal(d.status, 401, where);
          assert.equal(d.source.principal, '', where);
          assert.equal(d.source.namespace, '', where);
          break;
        default:
          assert.fail(`unexpected reason ${where}`);
      }
    }
  });

  test('AUDIT matches on every database tunnel, dry-run would-denies exactly on untraced API calls', () => {
    for (const d of decisions.filter((x) => x.reason !== 'bad_request' && x.reason !== 'no_identity')) {
      const audited = d.audit.some((a) => a.policy === 'database-audit' && a.rule === 'any-database-connection');
      assert.equal(audited, d.destination.port === DEFAULT_TARGETS.dbPort, `${d.destination.authority}`);
    }
    const apiAllowed = decisions.filter((d) => d.policy === 'api-from-frontend' && d.reason === 'allowed');
    assert.ok(apiAllowed.length > 0);
    for (const d of apiAllowed) {
      assert.equal(d.dryRun?.decision, d.traceId === '' ? 'deny' : 'allow', d.decisionId);
      if (d.traceId !== '') assert.equal(d.headers['traceparent']?.split('-')[1], d.traceId);
    }
    assert.ok(apiAllowed.some((d) => d.traceId === ''), 'the mix has untraced calls');
  });

  test('ztunnel headers are recorded: baggage parsed, forwarded kept, the source taken from the socket', () => {
    const traced = decisions.filter((d) => d.reason === 'allowed' && d.source.principal.endsWith('/ns/prod/sa/api'));
    assert.ok(traced.length > 0);
    for (const d of traced) {
      assert.equal(d.baggage['k8s.namespace.name'], 'prod');
      assert.equal(d.baggage['service.name'], 'api');
      assert.match(d.headers['forwarded'] ?? '', /^for="10\.0\.1\.7:\d+"$/);
      assert.equal(d.source.ip, '127.0.0.1', 'never the forwarded address');
    }
  });

  test('one close record per tunnel, with the echoed bytes counted both ways', () => {
    const tunnels = decisions.filter((d) => d.status === 200 || (d.decision === 'allow' && d.reason === 'upstream_failed'));
    const byDecision = new Map<string, CloseRecord[]>();
    for (const c of closes) byDecision.set(c.decisionId, [...(byDecision.get(c.decisionId) ?? []), c]);
    const missing = tunnels.filter((d) => byDecision.get(d.decisionId)?.length !== 1);
    assert.deepEqual(missing.map((d) => `${d.source.principal} -> ${d.destination.authority} stream ${d.streamId}`), []);
    assert.equal(closes.length, tunnels.length);
    for (const d of tunnels) {
      const c = byDecision.get(d.decisionId)![0]!;
      assert.equal(c.connectionId, d.connectionId);
      assert.deepEqual(c.source, d.source);
      if (d.reason === 'upstream_failed') {
        assert.equal(c.closeReason, 'upstream_failed');
        assert.equal(c.bytesSent + c.bytesReceived, 0);
      } else if (c.closeReason === 'completed') {
        assert.ok(c.bytesReceived > 0);
        assert.equal(c.bytesSent, c.bytesReceived, 'the echo returns every byte');
      } else {
        assert.equal(c.closeReason, 'client_reset', `${d.decisionId} ${c.closeReason}`);
      }
    }
    assert.ok(closes.some((c) => c.closeReason === 'client_reset'), 'the mix has clients giving up mid-call');
  });
});
