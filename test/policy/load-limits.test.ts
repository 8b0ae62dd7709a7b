/**
 * A large policy set must not stall the data path or keep its memory.
 *   - limits: a set over POLICY_SET_LIMITS is rejected whole, before parsing, with WG_POLICY_LIMIT
 *     naming the file and the limit; a running gateway keeps its previous snapshot;
 *   - yielding: parsing and compiling give the event loop turns (steps.ts);
 *   - memory: nothing a decision keeps (the decision cache, a tunnel) holds a replaced set alive.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSnapshot } from 'node:v8';
import { after, before, describe, it } from 'node:test';
import { formatDiagnostic } from '../../src/errors.ts';
import { compilePolicySetSteps } from '../../src/policy/compile.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { DecisionCache } from '../../src/policy/decision-cache.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { parsePolicyDocuments } from '../../src/policy/documents.ts';
import { compileFromTexts, loadPolicySet, POLICY_SET_LIMITS } from '../../src/policy/load.ts';
import { PolicyLoadCache } from '../../src/policy/load-cache.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { allowPolicy, startTestGateway, type TestGateway } from '../gateway/fixture.ts';

/** An ALLOW policy with `rules` rules, each admitting one principal to one port. */
function policy(name: string, rules: number): string {
  const lines = ['apiVersion: waygate.dev/v1alpha1', 'kind: AuthorizationPolicy', `metadata: { name: ${name} }`, 'spec:', '  action: ALLOW', '  rules:'];
  for (let i = 0; i < rules; i++) {
    lines.push(`    - name: r${i}`, `      when: source.principal == "spiffe://cluster.local/ns/${name}/sa/s${i}" && destination.port == ${1000 + i}`);
  }
  return lines.join('\n') + '\n';
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'wg-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('policy set limits', () => {
  it('a set over maxBytes is rejected before any YAML is parsed, naming the file that passes the limit', async (t) => {
    const dir = tempDir(t);
    const half = Math.ceil(POLICY_SET_LIMITS.maxBytes / 2);
    writeFileSync(join(dir, 'a.yaml'), policy('a', 1) + '#'.repeat(half) + '\n');
    // Not YAML at all: had it been parsed, the load would report WG_POLICY_YAML for it.
    writeFileSync(join(dir, 'b.yaml'), 'kind: [unclosed\n' + '#'.repeat(half) + '\n');
    const r = await loadPolicySet([dir], { version: 1 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.diagnostics.length, 1, r.diagnostics.map(formatDiagnostic).join('\n'));
    const d = r.diagnostics[0]!;
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.equal(d.severity, 'error');
    assert.ok(d.file.endsWith('b.yaml'), d.file);
    assert.match(d.message, new RegExp(`over the limit of ${POLICY_SET_LIMITS.maxBytes} bytes`));
    assert.match(d.message, /docs\/operating\.md/);
  });

  it('a set at maxBytes loads; one byte more is refused (UTF-8 bytes, not characters)', () => {
    const text = policy('a', 1) + '# é\n';
    const bytes = Buffer.byteLength(text);
    assert.equal(compileFromTexts([{ path: 'a.yaml', text }], 1, { maxBytes: bytes }).ok, true);
    const over = compileFromTexts([{ path: 'a.yaml', text }], 1, { maxBytes: bytes - 1 });
    assert.equal(over.ok, false);
    if (!over.ok) assert.match(over.diagnostics[0]!.message, new RegExp(`this file alone is ${bytes} bytes`));
  });

  it('a set over maxRules is rejected before any expression is compiled, naming the policy that passes the limit', () => {
    const files = [
      { path: '1.yaml', text: policy('first', 3) },
      // `destination.prot` is a CEL error: had it been compiled, the load would report WG_POLICY_CEL.
      { path: '2.yaml', text: policy('second', 3).replace('destination.port == 1000', 'destination.prot == 1000') },
    ];
    assert.equal(compileFromTexts(files.slice(0, 1), 1, { maxRules: 3 }).ok, true, 'exactly the limit loads');
    const r = compileFromTexts(files, 1, { maxRules: 5 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.diagnostics.length, 1, r.diagnostics.map(formatDiagnostic).join('\n'));
    const d = r.diagnostics[0]!;
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.equal(d.file, '2.yaml');
    assert.equal(d.line, 3, 'the line that names the policy');
    assert.match(d.message, /policy "second" brings it to 6 rules, over the limit of 5 rules/);
  });

  it('a limit refusal drops what the load parsed from the reload cache and keeps the previous entries', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), policy('a', 2));
    const cache = new PolicyLoadCache();
    assert.equal((await loadPolicySet([dir], { version: 1, cache })).ok, true);
    writeFileSync(join(dir, 'b.yaml'), policy('b', 2));
    const refused = await loadPolicySet([dir], { version: 2, cache, limits: { maxRules: 3 } });
    assert.equal(refused.ok, false);
    assert.equal(cache.fileCount, 1, 'b.yaml, parsed by the refused load, is not kept');
    rmSync(join(dir, 'b.yaml'));
    assert.equal((await loadPolicySet([dir], { version: 3, cache })).ok, true);
    assert.deepEqual(cache.stats.files, { hits: 1, misses: 0 }, 'a.yaml still comes from the cache');
  });
});

describe('a running gateway and an oversized set', () => {
  let upstream: Upstream;
  let t: TestGateway;
  before(async () => {
    upstream = await startUpstream('echo');
    t = await startTestGateway({ policies: { 'allow.yaml': allowPolicy('clients', 'keep') } });
  });
  after(async () => {
    await t.close();
    await upstream.close();
  });

  it('rejects the set whole with WG_POLICY_LIMIT; the previous snapshot stays in force', async () => {
    const inForce = t.sink.reloads.at(-1)!;
    assert.equal(inForce.result, 'applied');
    const reload = t.nextReload();
    // Written beside the policy directory and renamed in: the watcher sees one complete file.
    const staged = join(t.dir, 'huge.yaml');
    writeFileSync(staged, allowPolicy('everyone', 'keep', 'other') + '#'.repeat(POLICY_SET_LIMITS.maxBytes) + '\n');
    renameSync(staged, join(t.policyDir, 'huge.yaml'));
    const record = await reload;
    assert.equal(record.result, 'rejected');
    assert.deepEqual(record.previous, inForce.snapshot);
    assert.equal(record.errors.length, 1);
    assert.equal(record.errors[0]!.code, 'WG_POLICY_LIMIT');
    assert.ok(record.errors[0]!.file.endsWith('huge.yaml'), record.errors[0]!.file);
    assert.equal(t.gw.runtime!.store.current()!.hash, inForce.snapshot.hash, 'the previous snapshot stays in force');

    const tunnel = await (await t.connect('keep')).openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(tunnel.status, 200);
    tunnel.stream.close();
    await t.sink.until(() => t.sink.decisions.length > 0);
    assert.deepEqual(t.sink.decisions.at(-1)!.snapshot, inForce.snapshot, 'decided by the snapshot in force');
  });
});

describe('loading yields to the event loop', () => {
  it('compilePolicySetSteps yields at least once per rule', () => {
    const { documents } = parsePolicyDocuments(policy('a', 40) + '---\n' + policy('b', 60), 'p.yaml');
    const steps = compilePolicySetSteps(documents, { version: 1, hash: 'h' });
    let yields = 0;
    let r = steps.next();
    for (; r.done !== true; r = steps.next()) yields++;
    assert.ok('snapshot' in r.value);
    assert.ok(yields >= 100, `${yields} yields for 100 rules`);
  });

  it('loadPolicySet gives the event loop turns between parsing the first file and the snapshot', async (t) => {
    const dir = tempDir(t);
    // 20 files of 10 rules: over 200 steps to yield at (one per file and per rule; 240 turns seen),
    // ten times the 20 turns asserted; more rules would only cost CEL compiles.
    for (let f = 0; f < 20; f++) writeFileSync(join(dir, `p${String(f).padStart(2, '0')}.yaml`), policy(`p${f}`, 10));
    // The cache sees the load's first file lookup and its commit, the first and last moments of
    // parsing and compiling; a chain of setImmediate callbacks counts the turns in between.
    const events: string[] = [];
    class Observed extends PolicyLoadCache {
      override lookup(path: string, text: string): ReturnType<PolicyLoadCache['lookup']> {
        if (!events.includes('parse')) events.push('parse');
        return super.lookup(path, text);
      }
      override commit(): void {
        events.push('commit');
        super.commit();
      }
    }
    let done = false;
    const tick = (): void => {
      events.push('turn');
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    const r = await loadPolicySet([dir], { version: 1, cache: new Observed(), sliceMs: 0 });
    done = true;
    assert.equal(r.ok, true);
    const between = events.slice(events.indexOf('parse'), events.indexOf('commit')).filter((e) => e === 'turn').length;
    // One step per file and per rule: 200 rules give far more than 20 turns; 0 would be one block.
    assert.ok(between >= 20, `${between} event-loop turns while 20 files and 200 rules were parsed and compiled`);
  });
});

describe('a replaced set is not kept alive', () => {
  it('the decision cache holds entries of the snapshot in force only', () => {
    const load = (version: number): PolicySnapshot => {
      const r = compileFromTexts([{ path: 'p.yaml', text: policy('p', 3) }], version);
      assert.ok(r.ok);
      return r.snapshot;
    };
    const cache = new DecisionCache({ max: 100 });
    const ctx = (i: number) => contextFromInput({ source: { principal: `spiffe://cluster.local/ns/p/sa/s${i}` }, destination: { ip: '10.0.0.1', port: 1000 + i } });
    const old = load(1);
    for (let i = 0; i < 3; i++) assert.equal(cache.decide(old, ctx(i), { defaultAction: 'DENY' }).decision, 'allow');
    assert.equal(cache.stats().size, 3);
    const next = load(2);
    assert.equal(cache.decide(next, ctx(0), { defaultAction: 'DENY' }).snapshot.version, 2);
    assert.equal(cache.stats().size, 1, 'the three decisions of version 1 are gone');
  });

  it('a decision that outlives its snapshot does not keep the policy file text alive', async (t) => {
    const dir = tempDir(t);
    const marker = `# retention-marker-${randomUUID()}`;
    // A file much larger than anything a decision should hold; policy and rule names long enough
    // (13+ characters) that V8 would keep them as slices of the file text.
    writeFileSync(join(dir, 'p.yaml'), `${marker}\n${'#'.repeat(256 * 1024)}\n${allowPolicy('a-long-policy-name', 'frontend-service-account')}`);
    const { decision: held, cache } = await decideAndDrop(dir);
    assert.equal(held.policy, 'a-long-policy-name');
    assert.equal(cache.stats().size, 1);
    // The heap snapshot collects garbage first: any copy of the text left is retained by something.
    const retained = await largeStringsStartingWith(marker, 256 * 1024);
    assert.equal(retained, 0, 'the policy file text is still on the heap');
    assert.equal(held.rule, 'frontend-service-account', 'the decision is alive until here');
    assert.equal(cache.stats().size, 1, 'and so is the cache entry');
  });
});

/**
 * Loads the set in `dir` and decides one CONNECT through a decision cache; keeps only the decision
 * (as a tunnel does) and the cache (as the runtime does), not the snapshot.
 */
async function decideAndDrop(dir: string): Promise<{ decision: Decision; cache: DecisionCache }> {
  const r = await loadPolicySet([dir], { version: 1 });
  assert.ok(r.ok, r.ok ? '' : r.diagnostics.map(formatDiagnostic).join('\n'));
  const cache = new DecisionCache({ max: 10 });
  const ctx = contextFromInput({ source: { principal: 'spiffe://cluster.local/ns/prod/sa/frontend-service-account' }, destination: { ip: '10.0.0.1', port: 80 } });
  const d = cache.decide(r.snapshot, ctx, { defaultAction: 'DENY' });
  assert.equal(d.decision, 'allow');
  return { decision: d, cache };
}

/** How many strings of at least `minBytes` on the heap (after a full GC) start with `prefix`. */
async function largeStringsStartingWith(prefix: string, minBytes: number): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const c of getHeapSnapshot()) chunks.push(c as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const { node_fields: fields, node_types: [types] } = snap.snapshot.meta;
  const [type, name, size] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  let found = 0;
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    if (types[snap.nodes[i + type]!] !== 'string' || snap.nodes[i + size]! < minBytes) continue;
    if (snap.strings[snap.nodes[i + name]!]!.startsWith(prefix)) found++;
  }
  return found;
}
