/**
 * The shared helpers of src/util: the bounded cache every cache of the gateway uses, the one
 * deepFreeze, the one edit distance.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BoundedCache } from '../../src/util/bounded-cache.ts';
import { deepFreeze } from '../../src/util/deep-freeze.ts';
import { editDistance, suggest } from '../../src/util/suggest.ts';

describe('BoundedCache', () => {
  it('never holds more than its bound and evicts the least recently used entry', () => {
    const c = new BoundedCache<string, number>(3);
    c.set('a', 1);
    c.set('b', 2);
    c.set('c', 3);
    assert.equal(c.get('a'), 1); // a is now the most recent: b goes first
    c.set('d', 4);
    assert.equal(c.size, 3);
    assert.equal(c.get('b'), undefined);
    assert.deepEqual([c.get('a'), c.get('c'), c.get('d')], [1, 3, 4]);
  });

  it('replacing a key does not evict another', () => {
    const c = new BoundedCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    c.set('a', 10);
    assert.equal(c.size, 2);
    assert.deepEqual([c.get('a'), c.get('b')], [10, 2]);
    c.clear();
    assert.equal(c.size, 0);
  });

  it('refuses a bound that is not a positive integer', () => {
    assert.throws(() => new BoundedCache(0), RangeError);
  });
});

describe('deepFreeze', () => {
  it('leaves what `opaque` claims unfrozen and untouched', () => {
    const owned = { mutable: { n: 1 } };
    const v = deepFreeze({ a: [{ b: 1 }], owned }, (o) => o === owned);
    assert.ok(Object.isFrozen(v) && Object.isFrozen(v.a) && Object.isFrozen(v.a[0]));
    assert.ok(!Object.isFrozen(owned) && !Object.isFrozen(owned.mutable));
  });
});

describe('editDistance and suggest', () => {
  it('counts a transposition as one edit', () => {
    assert.equal(editDistance('lsiten', 'listen'), 1);
    assert.equal(editDistance('', 'abc'), 3);
  });

  it('takes an explicit reach, else one edit per three characters', () => {
    assert.equal(suggest('selektor', ['selector', 'rules']), 'selector');
    assert.equal(suggest('ab', ['xy']), undefined);
    assert.equal(suggest('ab', ['xy'], 2), 'xy');
  });
});
