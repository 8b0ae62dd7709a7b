import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashSources, inspectPolicyUpdates, readPolicySources } from '../../src/policy/sources.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'waygate-sources-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Creates files (path -> content) under a fresh directory and returns it. */
async function tree(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(root, name);
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), content);
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('readPolicySources', () => {
  it('walks directories recursively, keeps *.yaml/*.yml, skips hidden names, sorts by path', async () => {
    const dir = await tree('walk', {
      'b.yaml': 'b',
      'a.yml': 'a',
      'sub/c.yaml': 'c',
      'sub/deeper/d.yaml': 'd',
      'Z.yaml': 'z',
      'notes.txt': 'no',
      'policy.yaml.bak': 'no',
      '.hidden.yaml': 'no',
      '.git/config.yaml': 'no',
    });
    const { files, diagnostics } = await readPolicySources([dir]);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(files, [
      { path: join(dir, 'Z.yaml'), text: 'z' },
      { path: join(dir, 'a.yml'), text: 'a' },
      { path: join(dir, 'b.yaml'), text: 'b' },
      { path: join(dir, 'sub/c.yaml'), text: 'c' },
      { path: join(dir, 'sub/deeper/d.yaml'), text: 'd' },
    ]);
  });

  it('reads more files than it has in flight, in path order, each failure reported in path order', async () => {
    // 60 files and two dangling policy symlinks: more than the reader keeps in flight (16), so
    // completions arrive out of order; the result and the diagnostics must not.
    const names = Array.from({ length: 60 }, (_, i) => `p${String(i).padStart(2, '0')}.yaml`);
    const dir = await tree('many', Object.fromEntries(names.map((n) => [n, `text of ${n}`])));
    await symlink('missing-1.yaml', join(dir, 'p30-gone.yaml'));
    await symlink('missing-2.yaml', join(dir, 'p10-gone.yaml'));
    const { files, diagnostics } = await readPolicySources([dir]);
    assert.deepEqual(files, names.map((n) => ({ path: join(dir, n), text: `text of ${n}` })));
    assert.deepEqual(diagnostics.map((d) => [d.code, d.file]), [
      ['WG_POLICY_IO', join(dir, 'p10-gone.yaml')],
      ['WG_POLICY_IO', join(dir, 'p30-gone.yaml')],
    ]);
  });

  it('reads a file named explicitly whatever its extension, once even if also found by a walk', async () => {
    const dir = await tree('explicit', { 'p.yaml': 'p', 'policy.txt': 't' });
    const { files, diagnostics } = await readPolicySources([join(dir, 'policy.txt'), dir, join(dir, 'p.yaml')]);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(files.map((f) => f.path), [join(dir, 'p.yaml'), join(dir, 'policy.txt')]);
  });

  it('reads a Kubernetes ConfigMap volume through its visible symlinks only', async () => {
    const dir = await tree('configmap', {
      '..2026_01_01_00_00_00.000000001/x.yaml': 'new x',
      '..2026_01_01_00_00_00.000000001/y.yml': 'new y',
      // An older timestamped directory kubelet has not removed yet must not be read.
      '..2025_12_31_00_00_00.000000001/x.yaml': 'old x',
    });
    await symlink('..2026_01_01_00_00_00.000000001', join(dir, '..data'));
    await symlink('..data/x.yaml', join(dir, 'x.yaml'));
    await symlink('..data/y.yml', join(dir, 'y.yml'));
    const { files, diagnostics } = await readPolicySources([dir]);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(files, [
      { path: join(dir, 'x.yaml'), text: 'new x' },
      { path: join(dir, 'y.yml'), text: 'new y' },
    ]);
  });

  it('survives a symlink loop and reports a dangling policy symlink', async () => {
    const dir = await tree('loop', { 'a/p.yaml': 'p' });
    await symlink('..', join(dir, 'a', 'up'));
    await symlink('missing.yaml', join(dir, 'dangling.yaml'));
    const { files, diagnostics } = await readPolicySources([dir]);
    assert.deepEqual(files.map((f) => f.path), [join(dir, 'a/p.yaml')]);
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0]!.file, join(dir, 'dangling.yaml'));
    assert.equal(diagnostics[0]!.code, 'WG_POLICY_IO');
  });

  it('reports an unreadable path as WG_POLICY_IO at 1:1 and still reads the others', async () => {
    const dir = await tree('io', { 'ok.yaml': 'ok' });
    const missing = join(dir, 'nope.yaml');
    const { files, diagnostics } = await readPolicySources([missing, dir]);
    assert.deepEqual(files, [{ path: join(dir, 'ok.yaml'), text: 'ok' }]);
    assert.equal(diagnostics.length, 1);
    const d = diagnostics[0]!;
    assert.deepEqual({ code: d.code, file: d.file, line: d.line, col: d.col, path: d.path, severity: d.severity },
      { code: 'WG_POLICY_IO', file: missing, line: 1, col: 1, path: '', severity: 'error' });
    assert.match(d.message, /ENOENT/);
  });

  it('reports a file it may not read (skipped when running as root)', { skip: process.getuid?.() === 0 }, async () => {
    const dir = await tree('perm', { 'secret.yaml': 's' });
    await chmod(join(dir, 'secret.yaml'), 0o000);
    const { files, diagnostics } = await readPolicySources([dir]);
    assert.deepEqual(files, []);
    assert.equal(diagnostics[0]?.code, 'WG_POLICY_IO');
    assert.match(diagnostics[0]!.message, /EACCES/);
  });
});

// A file still being written must not be applied as if complete.
describe('readPolicySources: files being written', () => {
  it('waits for a file younger than settleMs, then reads it', async () => {
    const dir = await tree('settle-young', { 'p.yaml': 'complete' });
    // Modified "just now" as far as a 60 s settle is concerned, but old enough after 30 ms more.
    const mtime = new Date(Date.now() - 60_000 + 30);
    await utimes(join(dir, 'p.yaml'), mtime, mtime);
    const { files, diagnostics } = await readPolicySources([dir], { settleMs: 60_000, maxAttempts: 3 });
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(files.map((f) => f.text), ['complete']);
  });

  it('reports a file that never settles as WG_POLICY_UNSTABLE and reads the others', async () => {
    const dir = await tree('settle-never', { 'a.yaml': 'a', 'b.yaml': 'b' });
    const future = new Date(Date.now() + 3_600_000); // a writer's clock ahead of ours, or a file touched forever
    await utimes(join(dir, 'b.yaml'), future, future);
    const { files, diagnostics } = await readPolicySources([dir], { settleMs: 5, maxAttempts: 3 });
    assert.deepEqual(files.map((f) => f.text), ['a']);
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0]!.code, 'WG_POLICY_UNSTABLE');
    assert.equal(diagnostics[0]!.file, join(dir, 'b.yaml'));
    assert.equal(diagnostics[0]!.severity, 'error');
    assert.match(diagnostics[0]!.message, /still being written.*3 reads in a row.*atomically/);
  });

  it('reads at once without settleMs (the CLI) and when files are older than it', async () => {
    const dir = await tree('settle-old', { 'p.yaml': 'old' });
    const past = new Date(Date.now() - 3_600_000);
    await utimes(join(dir, 'p.yaml'), past, past);
    assert.deepEqual((await readPolicySources([dir], { settleMs: 100 })).files.map((f) => f.text), ['old']);
    const future = new Date(Date.now() + 3_600_000);
    await utimes(join(dir, 'p.yaml'), future, future);
    assert.deepEqual((await readPolicySources([dir])).files.map((f) => f.text), ['old']);
  });
});

describe('readPolicySources: maxBytes', () => {
  it('refuses a set by its stat sizes before reading any file (a stray huge file is never read into memory)', async () => {
    const dir = await tree('max-bytes', { 'a.yaml': 'a: 1\n' });
    await truncate(join(dir, 'b.yaml'), 64 * 1024 * 1024).catch(async () => {
      await writeFile(join(dir, 'b.yaml'), '');
      await truncate(join(dir, 'b.yaml'), 64 * 1024 * 1024); // sparse: costs no disk
    });
    const { files, diagnostics } = await readPolicySources([dir], { maxBytes: 8 * 1024 * 1024 });
    assert.deepEqual(files, [], 'nothing read');
    assert.deepEqual(diagnostics.map((d) => [d.code, d.file, d.severity]), [['WG_POLICY_LIMIT', join(dir, 'b.yaml'), 'error']]);
    assert.match(diagnostics[0]!.message, /up to and including this one total 67108869 bytes, over the limit of 8388608 bytes \(8 MiB\)/);
    // Under the limit, the same directory reads as usual.
    await truncate(join(dir, 'b.yaml'), 3);
    assert.equal((await readPolicySources([dir], { maxBytes: 8 * 1024 * 1024 })).files.length, 2);
  });
});

describe('inspectPolicyUpdates (policy check warnings)', () => {
  it('warns about editor swap, lock and backup files; ConfigMap volumes are atomic', async () => {
    const dir = await tree('inspect', {
      'a.yaml': 'a', '.a.yaml.swp': 'vim', 'b.yaml~': 'backup', '.#c.yaml': 'emacs lock', 'notes.txt': 'x',
      'team/d.yaml': 'd', 'team/#d.yaml#': 'emacs autosave',
    });
    const found = await inspectPolicyUpdates([dir]);
    assert.ok(found.every((d) => d.code === 'WG_POLICY_UNSAFE_UPDATE' && d.severity === 'warning'));
    assert.deepEqual(found.map((d) => d.file.slice(dir.length + 1)).sort(), ['.#c.yaml', '.a.yaml.swp', 'b.yaml~', 'team/#d.yaml#']);
    assert.match(found[0]!.message, /edited in place.*rename it into place/);

    // kubelet's AtomicWriter layout: nothing to warn about.
    const cm = await tree('inspect-cm', { '..2026_01_01/p.yaml': 'p' });
    await symlink('..2026_01_01', join(cm, '..data'));
    await symlink('..data/p.yaml', join(cm, 'p.yaml'));
    assert.deepEqual(await inspectPolicyUpdates([cm]), []);

    // A file named explicitly: its own swap file beside it counts, others do not.
    const single = await tree('inspect-file', { 'p.yaml': 'p', '.p.yaml.swp': 'vim', '.q.yaml.swp': 'other' });
    assert.deepEqual((await inspectPolicyUpdates([join(single, 'p.yaml')])).map((d) => d.file), [join(single, '.p.yaml.swp')]);
  });
});

describe('hashSources', () => {
  const a = { path: 'a.yaml', text: 'x' };
  const b = { path: 'b.yaml', text: 'y' };
  it('is a sha256 hex digest independent of input order', () => {
    assert.match(hashSources([a, b]), /^[0-9a-f]{64}$/);
    assert.equal(hashSources([a, b]), hashSources([b, a]));
  });
  it('changes with content, path and framing', () => {
    const base = hashSources([a, b]);
    const table = [
      [{ ...a, text: 'x ' }, b],
      [{ ...a, path: 'c.yaml' }, b],
      [a],
      // Moving bytes across the file boundary must change the hash (length-prefixed framing).
      [{ path: 'a.yaml', text: 'xy' }, { path: 'b.yaml', text: '' }],
    ];
    for (const files of table) assert.notEqual(hashSources(files), base, JSON.stringify(files));
  });
  it('hashes the empty set', () => {
    assert.equal(hashSources([]), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});
