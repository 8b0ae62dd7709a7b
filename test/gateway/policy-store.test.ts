import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PolicyStore } from '../../src/policy/store.ts';
import fs from 'node:fs';
import { concerns, directoriesFor, hashPolicyPaths, watchPolicyPaths, type PolicyWatcher, type WatchOptions } from '../../src/policy/watch.ts';

const root = mkdtempSync(join(tmpdir(), 'waygate-watch-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('policy store', () => {
  test('swap replaces one reference and returns the previous one; versions stay monotonic', () => {
    const store = new PolicyStore<{ version: number; hash: string }>();
    assert.equal(store.current(), undefined);
    assert.equal(store.allocateVersion(), 1);
    assert.equal(store.swap({ version: 5, hash: 'x' }), undefined);
    assert.equal(store.allocateVersion(), 6, 'never reuses a version below one in force');
    const prev = store.swap({ version: 7, hash: 'y' });
    assert.deepEqual(prev, { version: 5, hash: 'x' });
    assert.deepEqual(store.current(), { version: 7, hash: 'y' });
  });
});

/** A watcher whose events a test awaits one at a time. */
function observe(paths: string[], baseline: string, extra: Partial<WatchOptions> = {}): { watcher: PolicyWatcher; next(): Promise<{ hash: string; changed: boolean }> } {
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
    ...extra,
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

  // Events of other files in a watched directory must not postpone a reload.
  test('only names the loader reads count as events (table)', () => {
    const dir = join(root, 'table');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'audit.jsonl'), '');
    const treeDir = directoriesFor([dir]).get(dir)!;
    const file = join(root, 'table-file', 'p.yaml');
    mkdirSync(join(root, 'table-file'));
    const fileDir = directoriesFor([file]).get(join(root, 'table-file'))!;
    const missing = directoriesFor([join(root, 'nope', 'deeper', 'p.yaml')]);
    assert.deepEqual([...missing.keys()], [root], 'a missing path is watched through its nearest existing ancestor');
    const watchedSub = new Map([[join(dir, 'sub'), null]]);
    const cases: [string, typeof treeDir, string, string | null, boolean][] = [
      ['policy file change', treeDir, 'change', 'p.yaml', true],
      ['.yml file created', treeDir, 'rename', 'q.yml', true],
      ['ConfigMap ..data swap', treeDir, 'rename', '..data', true],
      ['audit log appended', treeDir, 'change', 'audit.jsonl', false],
      ['audit log rotated (a file)', treeDir, 'rename', 'audit.jsonl', false],
      ['editor swap file', treeDir, 'change', '.p.yaml.swp', false],
      ['README written', treeDir, 'change', 'README.md', false],
      ['a watched subdirectory removed', treeDir, 'rename', 'sub', true],
      ['the directory itself moved or deleted', treeDir, 'rename', 'table', true],
      ['the platform gave no name', treeDir, 'change', null, true],
      ['named file replaced', fileDir, 'rename', 'p.yaml', true],
      ['another yaml beside a named file', fileDir, 'change', 'other.yaml', false],
      ['audit log beside a named file', fileDir, 'change', 'audit.jsonl', false],
      ['next component of a missing path', missing.get(root)!, 'rename', 'nope', true],
      ['unrelated entry beside a missing path', missing.get(root)!, 'rename', 'else', false],
    ];
    for (const [what, r, type, name, want] of cases) {
      const d = r === treeDir ? dir : r === fileDir ? join(root, 'table-file') : root;
      assert.equal(concerns(d, r, type, name, watchedSub), want, what);
    }
  });

  test('a directory deleted and recreated between two checks is watched again (the dead watch is replaced)', { timeout: 30_000 }, async () => {
    const dir = join(root, 'recreated');
    mkdirSync(dir);
    writeFileSync(join(dir, 'p.yaml'), 'one');
    const w = observe([dir], await hashPolicyPaths([dir]));
    try {
      rmSync(dir, { recursive: true });
      mkdirSync(dir);
      let e = await w.next();
      while (!e.changed) e = await w.next();
      assert.equal(e.hash, await hashPolicyPaths([dir]), 'the empty directory was seen');
      writeFileSync(join(dir, 'p.yaml'), 'two');
      do e = await w.next(); while (!e.changed);
      assert.equal(e.hash, await hashPolicyPaths([dir]));
    } finally {
      w.watcher.close();
    }
  });

  test('a directory that cannot be watched is polled, says so, and is watched again once it can be', { timeout: 30_000 }, async () => {
    const dir = join(root, 'poll');
    mkdirSync(dir);
    writeFileSync(join(dir, 'p.yaml'), 'one');
    let failing = true;
    const modes: string[] = [];
    const w = observe([dir], await hashPolicyPaths([dir]), {
      pollIntervalMs: 50, // longer than the 20 ms debounce, which each poll would restart
      watchDirectory: (d, listener) => {
        if (failing) throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
        return fs.watch(d, { persistent: false }, (type, name) => listener(type, name === null ? null : String(name)));
      },
      onMode: (mode, detail) => modes.push(`${mode}:${mode === 'poll' ? detail.reason : ''}`),
    });
    try {
      assert.equal(w.watcher.mode, 'poll');
      assert.deepEqual(modes, ['poll:ENOSPC']);
      writeFileSync(join(dir, 'p.yaml'), 'two'); // no watch: only polling can see it
      let e = await w.next();
      while (!e.changed) e = await w.next();
      assert.equal(e.hash, await hashPolicyPaths([dir]));

      failing = false; // the next poll re-arms the watch
      const mode = (): string => w.watcher.mode; // read afresh after each check
      while (mode() !== 'watch') await w.next();
      assert.deepEqual(modes, ['poll:ENOSPC', 'watch:']);
      writeFileSync(join(dir, 'p.yaml'), 'three');
      do e = await w.next(); while (!e.changed);
      assert.equal(e.hash, await hashPolicyPaths([dir]));
    } finally {
      w.watcher.close();
    }
  });
});
