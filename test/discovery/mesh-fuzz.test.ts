/**
 * Fuzz/property tests of the mesh file parser (src/discovery/mesh-file.ts) with the suite's harness
 * (test/fuzz/fuzz.ts): test/fixtures/mesh/good.yaml mutated as hand edits mutate it, and cut short as
 * a torn write leaves it. The answer is a snapshot or WG_MESH diagnostics inside the text; never an
 * exception, never a hang, never a change to Object.prototype. A snapshot's indexes agree with its
 * lists.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseMeshText, type MeshParseResult } from '../../src/discovery/mesh-file.ts';
import { assertObjectPrototypeIntact, checkProperty, cutArb, mutateYaml, positionProblem, withinHangBound, yamlMutationArb } from '../fuzz/fuzz.ts';

const FILE = 'test/fixtures/mesh/good.yaml';
const GOOD = readFileSync(new URL('../fixtures/mesh/good.yaml', import.meta.url), 'utf8');

function check(text: string): MeshParseResult {
  const r = withinHangBound('parseMeshText', () => parseMeshText(text, FILE, { trustDomain: 'cluster.local', version: 1 }));
  assertObjectPrototypeIntact();
  if ('diagnostics' in r) {
    assert.ok(r.diagnostics.length > 0);
    for (const d of r.diagnostics) {
      assert.equal(d.code, 'WG_MESH');
      assert.equal(positionProblem(text, d.line, d.col), null, `${d.line}:${d.col} ${d.message}`);
    }
    return r;
  }
  const s = r.snapshot;
  for (const svc of s.services) {
    assert.equal(s.serviceByHostname(svc.hostname), svc);
    for (const v of svc.vips) assert.equal(s.serviceByVip(v), svc);
    for (const w of svc.endpoints) assert.ok(s.workloads.includes(w));
  }
  for (const w of s.workloads) for (const a of w.ips) assert.equal(s.workloadByIp(a), w);
  return r;
}

describe('fuzz: mesh file parser', () => {
  test('mutated good.yaml: a snapshot, or WG_MESH diagnostics inside the text', (t) => {
    let loaded = 0;
    checkProperty(t, 'parseMeshText mutated', fc.property(fc.array(yamlMutationArb, { minLength: 1, maxLength: 3 }), (mutations) => {
      if ('snapshot' in check(mutateYaml(GOOD, mutations))) loaded++;
    }), 400);
    t.diagnostic(`${loaded} mutated mesh files loaded`);
  });

  test('good.yaml cut short (a torn write): never an exception; the empty prefix is refused', (t) => {
    checkProperty(t, 'parseMeshText torn', fc.property(cutArb(GOOD), (cut) => {
      const r = check(GOOD.slice(0, cut));
      if (GOOD.slice(0, cut).trim() === '' || /^(#[^\n]*\n?)*$/.test(GOOD.slice(0, cut))) assert.ok('diagnostics' in r);
    }), 300);
  });
});
