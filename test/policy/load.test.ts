/**
 * Loading a policy set is all or nothing (docs/design.md §3): one bad file, a duplicate name across files or
 * an unreadable path, and no snapshot comes out. Diagnostics carry file:line:col.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileFromTexts, loadPolicySet } from '../../src/policy/load.ts';
import { decide } from '../../src/policy/engine.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { formatDiagnostic } from '../../src/errors.ts';

const FIXTURES = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures');

describe('loadPolicySet', () => {
  it('loads a directory: policies from every file in path order, tests beside them', async () => {
    const r = await loadPolicySet([join(FIXTURES, 'policies-good')], { version: 3 });
    assert.ok(r.ok, r.ok ? '' : r.diagnostics.map(formatDiagnostic).join('\n'));
    assert.deepEqual(r.snapshot.policies.map((p) => p.name), ['deny-dev', 'audit-db', 'api-from-frontend']);
    assert.deepEqual(r.snapshot.rules.map((x) => x.ordinal), [0, 1, 2]);
    assert.equal(r.snapshot.version, 3);
    assert.match(r.snapshot.hash, /^[0-9a-f]{64}$/);
    assert.deepEqual(r.files.map((f) => f.split('/').pop()), ['10-deny.yaml', '20-allow.test.yaml', '20-allow.yaml']);
    assert.deepEqual(r.snapshot.createdFrom, r.files);
    assert.deepEqual(r.tests.map((t) => t.name), ['api-from-frontend']);

    // The PolicyTest beside the policy passes against the loaded snapshot.
    const c = r.tests[0]!.cases[0]!;
    const d = decide(r.snapshot, contextFromInput(c.input), { defaultAction: 'DENY' });
    assert.equal(d.decision, c.expect.decision);
    assert.equal(d.rule, c.expect.rule);
  });

  it('a directory where one file is bad loads nothing', async () => {
    const r = await loadPolicySet([join(FIXTURES, 'policies-one-bad')], { version: 1 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.diagnostics.length, 1);
    const d = r.diagnostics[0]!;
    assert.equal(d.code, 'WG_POLICY_CEL');
    assert.match(d.file, /20-typo\.yaml$/);
    assert.equal(d.path, 'spec.rules[0].when');
    // `when: source.serviceAcount == ...` is on line 8; the unknown field starts at column 13.
    assert.equal(d.line, 8);
    assert.ok(d.col >= 13 && d.col <= 13 + 'source.'.length, `col ${d.col}`);
    assert.match(d.message, /serviceAcount/);
    assert.match(d.message, /did you mean "serviceAccount"/);
  });

  it('duplicate policy names across files load nothing', async () => {
    const r = await loadPolicySet([join(FIXTURES, 'policies-duplicate')], { version: 1 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.diagnostics.length, 1);
    assert.match(r.diagnostics[0]!.file, /b\.yaml$/);
    assert.match(r.diagnostics[0]!.message, /deny-dev/);
  });

  it('an unreadable path loads nothing, even when other paths are fine', async () => {
    const r = await loadPolicySet([join(FIXTURES, 'policies-good'), join(FIXTURES, 'does-not-exist.yaml')], { version: 1 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.diagnostics[0]!.code, 'WG_POLICY_IO');
  });
});

describe('compileFromTexts', () => {
  const policy = (name: string, when: string, extra = ''): string => `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ${name} }
spec:
  action: ALLOW${extra}
  rules:
    - name: r
      when: ${when}
`;

  it('collects every compile diagnostic of every file, with positions, and returns no snapshot', () => {
    const r = compileFromTexts(
      [
        { path: 'b.yaml', text: policy('b', 'destination.port == "80"') },
        { path: 'a.yaml', text: policy('a', 'sourse.ip == "10.0.0.1"', '\n  selector: destination.prot == 1') },
        { path: 'c.yaml', text: policy('c', 'true') },
      ],
      1,
    );
    assert.equal(r.ok, false);
    if (r.ok) return;
    const at = r.diagnostics.map((d) => `${d.file}:${d.line}:${d.col} ${d.path}`);
    // a.yaml is compiled first (path order): its selector (line 6, at the unknown field `prot`)
    // and its rule (line 9, at the unknown variable).
    assert.deepEqual(at, ['a.yaml:6:25 spec.selector', 'a.yaml:9:13 spec.rules[0].when', 'b.yaml:8:13 spec.rules[0].when']);
    assert.match(r.diagnostics[1]!.message, /did you mean "source"/);
    assert.match(r.diagnostics[2]!.message, /ports are ints/);
  });

  it('a YAML error in one file fails the whole set', () => {
    const r = compileFromTexts([{ path: 'a.yaml', text: policy('a', 'true') }, { path: 'b.yaml', text: 'kind: [unclosed' }], 1);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.diagnostics.every((d) => d.file === 'b.yaml'));
  });

  it('ordinals run across files in path order', () => {
    const r = compileFromTexts([{ path: 'z.yaml', text: policy('z', 'true') }, { path: 'a.yaml', text: policy('a', 'true') }], 1);
    assert.ok(r.ok);
    assert.deepEqual(r.snapshot.policies.map((p) => [p.name, p.ordinal]), [['a', 0], ['z', 1]]);
    assert.deepEqual(r.files, ['a.yaml', 'z.yaml']);
  });
});
