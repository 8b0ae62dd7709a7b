/**
 * How `npm test` shares processes between test files (scripts/test.mjs), read from its `--list`:
 * no file is left out or run twice, a file marked `// own-process:` runs alone, and a group holds
 * files of one directory only, at most 12. A file dropped from the plan would pass unnoticed: the
 * runner's counts would only be smaller.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Plan {
  alone: string[];
  groups: { entry: string; members: string[] }[];
}

const plan = JSON.parse(execFileSync(process.execPath, ['scripts/test.mjs', '--list'], { cwd: ROOT, encoding: 'utf8' })) as Plan;

const onDisk = readdirSync(path.join(ROOT, 'test'), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .flatMap((d) => readdirSync(path.join(ROOT, 'test', d.name)).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${d.name}/${f}`))
  .sort();

test('every test file is in the plan exactly once', () => {
  const planned = [...plan.alone, ...plan.groups.flatMap((g) => g.members)];
  assert.deepEqual([...planned].sort(), onDisk);
  assert.equal(new Set(planned).size, planned.length, 'a file planned twice');
  assert.ok(onDisk.includes('test/helpers/test-plan.test.ts'), 'this file itself is found');
});

test('a file marked own-process runs alone; a group holds files of one directory, 2 to 12', () => {
  const marked = onDisk.filter((f) => /^\/\/ own-process: \S/m.test(readFileSync(path.join(ROOT, f), 'utf8')));
  assert.ok(marked.includes('test/policy/attribute-extension.test.ts'), 'it swaps a module before the gateway loads');
  for (const f of marked) assert.ok(plan.alone.includes(f), `${f} is marked but shares a process`);
  const entries = new Set<string>();
  for (const { entry, members } of plan.groups) {
    assert.ok(members.length >= 2 && members.length <= 12, `${entry}: ${members.length} files`);
    assert.equal(new Set(members.map((m) => path.dirname(m))).size, 1, `${entry} mixes directories: ${members.join(', ')}`);
    assert.match(entry, /^dist-test\/groups\/[a-z0-9-]+-\d+\.test\.mjs$/);
    assert.ok(!entries.has(entry), `${entry} twice`);
    entries.add(entry);
  }
  assert.ok(plan.groups.length > 0);
});

test('a file that shares a process registers no root-level beforeEach or afterEach: it would run around the other files\' tests', () => {
  for (const f of plan.groups.flatMap((g) => g.members)) {
    const text = readFileSync(path.join(ROOT, f), 'utf8');
    assert.doesNotMatch(text, /^(beforeEach|afterEach)\(/m, `${f}: move the hook into the describe whose tests need it`);
  }
});
