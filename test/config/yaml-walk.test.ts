// The shared YAML walker (src/config/yaml-walk.ts): one walk, worded per format. The config and
// the policy documents report the same problems at the same places and paths; only words differ.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CONFIG_WORDING, POLICY_WORDING, mapFields, refuseIndirection, seqItems, singleDocument, walkContext, yamlWalker,
  type WalkWording,
} from '../../src/config/yaml-walk.ts';

const TEXT = [
  'listen: a', //         line 1
  'listn: b', //          line 2: unknown, one edit from "listen"
  'listen: c', //         line 3: given twice
  '"app.io/x": d', //     line 4: unknown, not identifier-like
  '[k]: e', //            line 5: not a string key
  'items: 3', //          line 6: not a list
  '',
].join('\n');

function walk(wording: WalkWording) {
  const cx = walkContext('WG_CONFIG', 'f.yaml', TEXT, wording);
  const root = singleDocument(TEXT, cx, 'one document')!;
  const fields = mapFields(root, 'spec', cx, ['listen', 'items', 'port'], { required: ['port'] })!;
  seqItems(fields.get('items')!.value, 'spec.items', cx);
  return { cx, fields };
}

describe('yaml-walk: one walk, two wordings', () => {
  it('reports the same problems at the same places under both wordings', () => {
    const config = walk(CONFIG_WORDING);
    const policy = walk(POLICY_WORDING);
    const where = (d: { line: number; col: number; path: string }) => `${d.line}:${d.col} ${d.path}`;
    assert.deepEqual(config.cx.diags.map(where), ['2:1 spec.listn', '3:1 spec.listen', '4:1 spec.app.io/x', '5:1 spec', '1:1 spec.port', '6:8 spec.items']);
    // The policy wording brackets a key that is not identifier-like; every other place is the same.
    assert.deepEqual(policy.cx.diags.map(where), ['2:1 spec.listn', '3:1 spec.listen', '4:1 spec["app.io/x"]', '5:1 spec', '1:1 spec.port', '6:8 spec.items']);
    assert.deepEqual([...config.fields.keys()], ['listen', 'items']);
    assert.deepEqual([...policy.fields.keys()], ['listen', 'items']);
    assert.equal(config.fields.get('listen')!.value!.toString(), 'a', 'the first of a field given twice is kept');
  });

  it('words them per format', () => {
    assert.deepEqual(walk(CONFIG_WORDING).cx.diags.map((d) => d.message), [
      'unknown field "listn" (known: listen, items, port)',
      'duplicate field "listen"',
      'unknown field "app.io/x" (known: listen, items, port)',
      'keys must be strings, got a list',
      'missing required field "port"',
      'expected a list, got number 3',
    ]);
    assert.deepEqual(walk(POLICY_WORDING).cx.diags.map((d) => d.message), [
      'unknown field "listn" (did you mean "listen"?); allowed fields: listen, items, port',
      'field "listen" is given twice; first at line 1:1',
      'unknown field "app.io/x"; allowed fields: listen, items, port',
      'field names must be strings, found a list',
      'missing required field "port"',
      'expected a list, found the number 3',
    ]);
  });

  it('the combinators take the context\'s wording', () => {
    const { int, oneOf, str } = yamlWalker();
    const text = 'a: 70000\nb: X\nc: 5\n';
    for (const [wording, want] of [
      [CONFIG_WORDING, ['70000 is out of range 0-65535', 'must be one of x, y; got string "X"', 'expected a string, got number 5']],
      [POLICY_WORDING, ['70000 is out of range 0..65535', 'invalid value "X"; allowed values: x, y', 'expected a string, found the number 5 (quote it)']],
    ] as const) {
      const cx = walkContext('WG_CONFIG', 'f.yaml', text, wording);
      const f = mapFields(singleDocument(text, cx, 'one')!, '', cx, ['a', 'b', 'c'])!;
      assert.equal(int(0, 65535)(f.get('a')!.value, 'a', cx), undefined);
      assert.equal(oneOf(['x', 'y'])(f.get('b')!.value, 'b', cx), undefined);
      assert.equal(str()(f.get('c')!.value, 'c', cx), undefined);
      assert.deepEqual(cx.diags.map((d) => d.message), want);
    }
  });

  it('refuseIndirection points at each anchor, alias, tag and merge key, with its path', () => {
    const text = 'a: &x 1\nb: *x\nc: !!str 2\nd:\n  <<: {e: 1}\n';
    const cx = walkContext('WG_POLICY_SCHEMA', 'f.yaml', text, POLICY_WORDING);
    refuseIndirection(cx, text, singleDocument(text, cx, 'one'), 'WG_POLICY_FORBIDDEN', 'write it out');
    assert.deepEqual(cx.diags.map((d) => `${d.line}:${d.col} ${d.path} ${d.code} ${d.message}`), [
      '1:4 a WG_POLICY_FORBIDDEN YAML anchor &x is not allowed: write it out',
      '2:4 b WG_POLICY_FORBIDDEN YAML alias *x is not allowed: write it out',
      '3:4 c WG_POLICY_FORBIDDEN YAML tag !!str is not allowed: write it out',
      '5:3 d WG_POLICY_FORBIDDEN YAML merge key << is not allowed: write it out',
    ]);
  });
});
