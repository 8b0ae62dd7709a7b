import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PolicyStore } from '../../src/policy/store.ts';
import { hashPolicyPaths, watchPolicyPaths, type PolicyWatcher } from '../../src/policy/watch.ts';

const root = mkdtempSync(join(tmpdir(), 'waygate-watch-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('policy store', () => {
  test('swap replaces one reference, notifies in order, versions stay monotonic', () => {
    const store = new PolicyStore<{ version: number; hash: string }>();
    assert.equal(store.current(), undefined);
    const seen: string[] = [];
    store.onSwap((next, prev) => seen.push(`a:${prev?.hash ?? '-'}->${next.hash}`));
    const off = store.onSwap((next) => seen.push(`b:${next.hash}`));
    assert.equal(store.allocateVersion(), 1);
    assert.equal(store.swap({ version: 5, hash: 'x' }), undefined);
    assert.equal(store.allocateVersion(), 6, 'never reuses a version below one in force');
    off();
    const prev = store.swap({ version: 7, hash: 'y' });
    assert.deepEqual(prev, { version: 5, hash: 'x' });
    assert.deepEqual(store.current(), { version: 7, hash: 'y' });
    assert.deepEqual(seen, ['a:-->x', 'b:x', 'a:x->y']);
  });
});

/** A watcher whose events a test awaits one at a time. */
function observe(paths: string[], baseline: string): { watcher: PolicyWatcher; next(): Promise<{ hash: string; changed: boolean }> } {
  // The watcher holds no reference on the event loop (a gateway's listeners do); hold one here.
  const keepAlive = setInterval(() => undefined, 60_000);
  const queue: { hash: string; changed: boolean }[] = [];
  const waiting: ((e: { hash: string; changed: boolean }) => void)[] = [];
  const watcher = watchPolicyPaths(paths, baseline, {
    debounceMs: 20,
    onChange: () => undefined,
    onChecked: (hash, changed) => {
      const e = { hash, changed };
      const w = waiting.shift();
      if (w) w(e);
      else queue.push(e);
    },
  });
  const close = watcher.close.bind(watcher);
  watcher.close = () => {
    clearInterval(keepAlive);
    close();
  };
  return {
    watcher,
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiting.push(resolve))),
  };
}

describe('policy watcher', () => {
  test('reports content changes with the snapshot hash; touching a file changes nothing', async () => {
    const dir = join(root, 'a');
    mkdirSync(dir);
    writeFileSync(join(dir, 'p.yaml'), 'one');
    const w = observe([dir], await hashPolicyPaths([dir]));
    try {
      utimesSync(join(dir, 'p.yaml'), new Date(), new Date(Date.now() + 5000));
      assert.deepEqual(await w.next(), { hash: await hashPolicyPaths([dir]), changed: false });
      writeFileSync(join(dir, 'p.yaml'), 'two');
      const e = await w.next();
      assert.equal(e.changed, true);
      assert.equal(e.hash, await hashPolicyPaths([dir]));
      assert.equal(w.watcher.hash, e.hash);
      // Non-policy files and dotfiles raise no check at all (the next check is the policy edit's).
      writeFileSync(join(dir, '.p.yaml.swp'), 'editor noise');
      writeFileSync(join(dir, 'README.md'), 'docs');
      writeFileSync(join(dir, 'p.yaml'), 'three');
      const third = await w.next();
      assert.equal(third.changed, true);
      assert.equal(third.hash, await hashPolicyPaths([dir]));
    } finally {
      w.watcher.close();
    }
  });

  test('a file path is watched through its directory (editors replace files by rename)', async () => {
    const dir = join(root, 'b');
    mkdirSync(dir);
    const file = join(dir, 'only.yaml');
    writeFileSync(file, 'v1');
    const w = observe([file], await hashPolicyPaths([file]));
    try {
      writeFileSync(join(dir, 'only.yaml.tmp'), 'v2');
      renameSync(join(dir, 'only.yaml.tmp'), file);
      let e = await w.next();
      while (!e.changed) e = await w.next();
      assert.equal(e.hash, await hashPolicyPaths([file]));
    } finally {
      w.watcher.close();
    }
  });

  test('a directory that does not exist yet is picked up when it appears, with new subdirectories', async () => {
    const dir = join(root, 'c', 'policies');
    const w = observe([dir], await hashPolicyPaths([dir]));
    try {
      mkdirSync(join(dir, 'team'), { recursive: true });
      let e = await w.next();
      writeFileSync(join(dir, 'team', 'x.yaml'), 'x');
      do e = await w.next(); while (!e.changed);
      assert.equal(e.hash, await hashPolicyPaths([dir]));
    } finally {
      w.watcher.close();
    }
  });
});
