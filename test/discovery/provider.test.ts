/**
 * The mesh-file provider (src/discovery/provider.ts) on real files and real directory watches:
 * startup, hot reload on an in-place write and on a rename into place (editors, ConfigMap swaps),
 * a rejected edit keeping the last good snapshot, unchanged content, versions, swap listeners, and
 * the polling fallback. Every wait is on a callback, never a sleep.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { meshHash } from '../../src/discovery/mesh-file.ts';
import type { DiscoverySnapshot } from '../../src/discovery/model.ts';
import { meshFileProvider, NO_SNAPSHOT, type DiscoveryProvider, type DiscoveryReload } from '../../src/discovery/provider.ts';

const root = mkdtempSync(join(tmpdir(), 'waygate-mesh-provider-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

function meshText(workloads: string[]): string {
  return 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices:\n' +
    `  - { hostname: echo.shop.svc.cluster.local, namespace: shop, vips: ["10.96.0.10"], ports: [{ port: 80 }], endpoints: [${workloads.join(', ')}] }\n` +
    'workloads:\n' +
    workloads.map((w, i) => `  - { name: ${w}, namespace: shop, ips: ["10.244.0.${i + 1}"], serviceAccount: echo }\n`).join('');
}

/** A provider on a fresh directory, with a queue of the reloads its watch reports. */
function setup(opts: { settleMs?: number; watchDirectory?: Parameters<typeof meshFileProvider>[1]['watchDirectory']; pollIntervalMs?: number } = {}) {
  const dir = join(root, `d${dirs++}`);
  fs.mkdirSync(dir);
  const file = join(dir, 'mesh.yaml');
  const provider = meshFileProvider(file, { trustDomain: 'cluster.local', settleMs: opts.settleMs ?? 0, debounceMs: 10, ...opts });
  const swaps: [DiscoverySnapshot, DiscoverySnapshot | null][] = [];
  provider.onSwap((next, previous) => swaps.push([next, previous]));
  const reloads: DiscoveryReload[] = [];
  let waiter: { pred: (r: DiscoveryReload) => boolean; resolve: (r: DiscoveryReload) => void } | null = null;
  const errors: Error[] = [];
  const startWatch = (): void => provider.watch((r) => {
    reloads.push(r);
    if (waiter?.pred(r)) {
      const w = waiter;
      waiter = null;
      w.resolve(r);
    }
  }, (err) => errors.push(err));
  /**
   * The next watched reload matching `pred` (earlier ones that do not match are kept in `reloads`).
   * The watch holds no reference on the event loop (a gateway's listeners do): hold one meanwhile.
   */
  const next = async (pred: (r: DiscoveryReload) => boolean): Promise<DiscoveryReload> => {
    const keepAlive = setInterval(() => undefined, 60_000);
    try {
      return await new Promise<DiscoveryReload>((resolve) => { waiter = { pred, resolve }; });
    } finally {
      clearInterval(keepAlive);
    }
  };
  return { dir, file, provider, swaps, reloads, errors, startWatch, next };
}

/** Atomic replacement: write a temporary file beside it, rename it over the old one. */
function replace(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

const closing: DiscoveryProvider[] = [];
after(() => { for (const p of closing) p.close(); });

describe('meshFileProvider', () => {
  test('startup: applied as version 1; the snapshot, counts and hash', async () => {
    const { file, provider, swaps } = setup();
    const text = meshText(['echo-1', 'echo-2']);
    writeFileSync(file, text);
    assert.equal(provider.current(), null);
    const r = await provider.reload('startup');
    assert.deepEqual(r, {
      result: 'applied', trigger: 'startup', snapshot: { version: 1, hash: meshHash(file, text) }, services: 1, workloads: 2, errors: [],
    });
    assert.equal(provider.kind, 'mesh-file');
    assert.equal(provider.current()!.version, 1);
    assert.equal(provider.current()!.source, `mesh-file ${file}`);
    assert.equal(swaps.length, 1);
    assert.deepEqual([swaps[0]![0], swaps[0]![1]], [provider.current(), null]);
  });

  test('startup failure is the caller\'s: rejected, current() stays null, no swap', async () => {
    const { file, provider, swaps } = setup();
    const missing = await provider.reload('startup');
    assert.equal(missing.result, 'rejected');
    assert.deepEqual(missing.snapshot, NO_SNAPSHOT);
    assert.equal(missing.previous, undefined);
    assert.deepEqual(missing.errors.map((d) => [d.code, d.file, d.line, d.col]), [['WG_MESH', file, 1, 1]]);
    writeFileSync(file, '');
    const empty = await provider.reload('startup');
    assert.equal(empty.result, 'rejected');
    assert.match(empty.errors[0]!.message, /holds no document/);
    assert.equal(provider.current(), null);
    assert.equal(swaps.length, 0);
  });

  test('unchanged content is not swapped; versions count applied snapshots only', async () => {
    const { file, provider, swaps } = setup();
    writeFileSync(file, meshText(['echo-1']));
    await provider.reload('startup');
    const same = await provider.reload('signal');
    assert.deepEqual([same.result, same.trigger, same.snapshot.version, same.previous], ['unchanged', 'signal', 1, undefined]);
    writeFileSync(file, 'kind: Nope\n');
    const bad = await provider.reload('admin');
    assert.equal(bad.result, 'rejected');
    writeFileSync(file, meshText(['echo-1', 'echo-2']));
    const good = await provider.reload('admin');
    assert.deepEqual([good.result, good.snapshot.version, good.previous?.version], ['applied', 2, 1]);
    assert.equal(swaps.length, 2);
  });

  test('concurrent reloads run one at a time: one applied, the others unchanged, one version', async () => {
    const { file, provider, swaps } = setup();
    writeFileSync(file, meshText(['echo-1']));
    const results = await Promise.all([provider.reload('startup'), provider.reload('signal'), provider.reload('admin')]);
    assert.deepEqual(results.map((r) => [r.result, r.snapshot.version]), [['applied', 1], ['unchanged', 1], ['unchanged', 1]]);
    assert.equal(swaps.length, 1);
  });

  test('hot reload: an in-place write, a rename into place, a rejected edit, then a fix', async () => {
    const { file, provider, swaps, startWatch, next, errors } = setup({ settleMs: 20 });
    closing.push(provider);
    writeFileSync(file, meshText(['echo-1']));
    await provider.reload('startup');
    startWatch();

    // In place (truncate and write): settle (20 ms) and the stable read keep a half-written file out.
    let applied = next((r) => r.result === 'applied');
    writeFileSync(file, meshText(['echo-1', 'echo-2']));
    let r = await applied;
    assert.deepEqual([r.trigger, r.snapshot.version, r.previous?.version, r.workloads], ['watch', 2, 1, 2]);

    // Replaced by rename (editors, kubelet's ..data swap): the directory watch sees the new entry.
    applied = next((x) => x.result === 'applied');
    replace(file, meshText(['echo-1', 'echo-2', 'echo-3']));
    r = await applied;
    assert.deepEqual([r.snapshot.version, r.previous?.version, r.workloads], [3, 2, 3]);
    const good = provider.current()!;

    // A bad edit: rejected with its errors at file:line:col; the last good snapshot stays.
    const rejected = next((x) => x.result === 'rejected');
    replace(file, meshText(['echo-1']).replace('serviceAccount: echo', 'serviceAccount: Echo'));
    r = await rejected;
    assert.equal(r.errors.length, 1);
    assert.deepEqual([r.errors[0]!.code, r.errors[0]!.file, r.errors[0]!.line, r.errors[0]!.path], ['WG_MESH', file, 6, 'workloads[0].serviceAccount']);
    assert.deepEqual([r.snapshot, r.previous], [{ version: 3, hash: good.hash }, { version: 3, hash: good.hash }]);
    assert.equal(provider.current(), good);

    // Fixed: the next version.
    applied = next((x) => x.result === 'applied');
    replace(file, meshText(['echo-4']));
    r = await applied;
    assert.deepEqual([r.snapshot.version, r.previous?.version, r.workloads], [4, 3, 1]);

    // onSwap: once per swap, in order, each with the snapshot it replaced.
    assert.deepEqual(swaps.map(([n, p]) => [n.version, p?.version ?? null]), [[1, null], [2, 1], [3, 2], [4, 3]]);
    assert.deepEqual(errors, []);
  });

  test('the file deleted is a rejected reload (the last good stays); recreated, it applies', async () => {
    const { file, provider, startWatch, next } = setup();
    closing.push(provider);
    writeFileSync(file, meshText(['echo-1']));
    await provider.reload('startup');
    startWatch();
    const rejected = next((r) => r.result === 'rejected');
    fs.unlinkSync(file);
    const r = await rejected;
    assert.match(r.errors[0]!.message, /cannot read mesh file: ENOENT/);
    assert.equal(provider.current()!.version, 1);
    const applied = next((x) => x.result === 'applied');
    replace(file, meshText(['echo-2']));
    assert.equal((await applied).snapshot.version, 2);
  });

  test('a watch that cannot be set up (inotify limits) falls back to polling and still reloads', async () => {
    const failing = (): fs.FSWatcher => {
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
    };
    const { file, provider, startWatch, next, errors } = setup({ watchDirectory: failing, pollIntervalMs: 20 });
    closing.push(provider);
    writeFileSync(file, meshText(['echo-1']));
    await provider.reload('startup');
    startWatch();
    assert.equal(errors.length, 1);
    const applied = next((r) => r.result === 'applied');
    replace(file, meshText(['echo-1', 'echo-2']));
    assert.equal((await applied).snapshot.version, 2);
  });

  test('after close, watched changes are no longer reported', async () => {
    const { file, provider, startWatch, reloads } = setup();
    writeFileSync(file, meshText(['echo-1']));
    await provider.reload('startup');
    startWatch();
    provider.close();
    replace(file, meshText(['echo-2']));
    // An explicit reload still works (the gateway's shutdown may race one) and is the only one.
    const r = await provider.reload('signal');
    assert.equal(r.result, 'applied');
    assert.deepEqual(reloads, []);
    assert.throws(() => provider.watch(() => {}), /after close/);
  });
});
