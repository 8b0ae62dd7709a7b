/**
 * Fuzz/property tests of the policy loader (src/policy/documents.ts, src/policy/load.ts
 * compileFromTexts) on the example policies in policies/, mutated as hand edits, bad merges and
 * torn writes mutate files: byte flips, truncation (at `---` boundaries too), duplicated and
 * removed lines, indentation changes, empty files.
 *
 * 1. Any mutation: the set loads to a snapshot or fails with diagnostics whose file:line:col lies
 *    inside the text they name, column included; never an exception,
 *    never a hang.
 * 2. Truncation of a file that holds DENY policies: a prefix that loads must not allow any context
 *    of a fixed table that the full set denies. A torn file must never loosen enforcement.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import type { Diagnostic } from '../../src/errors.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import type { DecisionContext } from '../../src/policy/context.ts';
import type { DefaultAction } from '../../src/policy/decision.ts';
import { decide } from '../../src/policy/engine.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import { PolicyLoadCache } from '../../src/policy/load-cache.ts';
import type { PolicySourceFile } from '../../src/policy/sources.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import { checkProperty, cutArb, positionProblem, withinHangBound, yamlMutationArb, mutateYaml } from './fuzz.ts';

const POLICY_DIR = new URL('../../policies/', import.meta.url);

/** Every example file, policies and PolicyTests, as the loader reads them (path order). */
const EXAMPLES: PolicySourceFile[] = fs
  .readdirSync(POLICY_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => ({ path: `policies/${f}`, text: fs.readFileSync(new URL(f, POLICY_DIR), 'utf8') }));

const POLICY_FILES = EXAMPLES.filter((f) => !f.path.endsWith('.test.yaml'));

/**
 * The same policies as one multi-document file, a common ConfigMap layout: a cut at one of its
 * `---` markers drops whole documents, the DENY ones (deny-dev, deny-link-local) among them.
 */
const ONE_FILE: PolicySourceFile = {
  path: 'policies/all.yaml',
  text: POLICY_FILES.map((f) => f.text.trimEnd()).join('\n---\n') + '\n',
};

function load(files: readonly PolicySourceFile[], cache?: PolicyLoadCache): ReturnType<typeof compileFromTexts> {
  return withinHangBound('compileFromTexts', () => compileFromTexts(files, 1, undefined, cache));
}

/**
 * The mutation property's reload cache (src/policy/load-cache.ts), as the gateway reloads: a
 * mutated set differs from the examples in one or two files, and the examples' parses and compiles
 * are reused for the others. The mutated files are parsed and compiled as without it (a hit needs
 * the same path and text), and a hit gives what a fresh parse gives (test/policy/load-cache.test.ts);
 * without it, parsing the 12 or 13 unchanged files again was 90% of this property's CPU.
 */
const reloadCache = new PolicyLoadCache();
const baseline = compileFromTexts(EXAMPLES, 1, undefined, reloadCache);
assert.ok(baseline.ok, 'the example policies load');

/**
 * The decision table: every PolicyTest case's input beside the examples, plus tunnels that only a
 * DENY policy stands between and an ALLOW (or defaultAction ALLOW), each under both defaultActions.
 */
const CONTEXTS: { name: string; context: DecisionContext }[] = [
  ...baseline.tests.flatMap((t) => t.cases.map((c) => ({ name: `${t.name}: ${c.name}`, context: contextFromInput(c.input) }))),
  ...[
    { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', ip: 'fe80::1', port: 8080 },
    { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', ip: '169.254.169.254', port: 8080 },
    { principal: 'spiffe://cluster.local/ns/monitoring/sa/prometheus', ip: 'fe80::7', port: 9090 },
    { principal: 'spiffe://cluster.local/ns/dev/sa/frontend', ip: '10.0.1.7', port: 8080 },
    { principal: 'spiffe://cluster.local/ns/dev/sa/api', ip: '10.0.4.2', port: 5432 },
    { principal: 'spiffe://cluster.local/ns/dev/sa/web', ip: '10.0.1.7', port: 3000 },
  ].map(({ principal, ip, port }) => ({
    name: `${principal} -> ${ip}:${port}`,
    context: contextFromInput({ source: { principal, ip: '10.0.0.5' }, destination: { ip, port } }),
  })),
];
const DEFAULT_ACTIONS: readonly DefaultAction[] = ['DENY', 'ALLOW'];

/** Every (context, defaultAction) the `after` snapshot allows and the `before` one denies. */
function loosened(before: PolicySnapshot, after: PolicySnapshot): string[] {
  const out: string[] = [];
  for (const { name, context } of CONTEXTS) {
    for (const defaultAction of DEFAULT_ACTIONS) {
      const was = decide(before, context, { defaultAction });
      const now = decide(after, context, { defaultAction });
      if (was.decision === 'deny' && now.decision === 'allow') {
        out.push(`${name} (defaultAction ${defaultAction}): was deny (${was.reason} ${was.policy ?? ''}/${was.rule ?? ''}), now allow (${now.reason})`);
      }
    }
  }
  return out;
}

/**
 * Fails unless every diagnostic names one of `files`, a line of that file and a column from 1, and
 * (with `lineEnd`) a column no further than the end of that line.
 */
function assertDiagnosticsInBounds(diagnostics: readonly Diagnostic[], files: readonly PolicySourceFile[], lineEnd: boolean): void {
  for (const d of diagnostics) {
    const file = files.find((f) => f.path === d.file);
    assert.ok(file, `diagnostic names ${d.file}, not a loaded file`);
    const problem = positionProblem(file.text, d.line, d.col, { lineEnd });
    assert.equal(problem, null, `${d.file}:${d.line}:${d.col} (${d.code} ${d.message.slice(0, 120)}): ${problem}`);
    assert.match(d.code, /^WG_POLICY_/);
  }
}

/** Up to two example files, each edited 1-4 times. */
const mutatedSetArb = fc
  .array(fc.record({ index: fc.nat({ max: EXAMPLES.length - 1 }), mutations: fc.array(yamlMutationArb, { minLength: 1, maxLength: 4 }) }), {
    minLength: 1,
    maxLength: 2,
  })
  .map((edits) => {
    const files = EXAMPLES.map((f) => ({ ...f }));
    for (const e of edits) files[e.index]!.text = mutateYaml(files[e.index]!.text, e.mutations);
    return files;
  });

/** The load of a mutated set, checked: a snapshot, or errors whose positions pass `lineEnd`. */
function checkMutatedLoad(files: readonly PolicySourceFile[], lineEnd: boolean): boolean {
  const r = load(files, reloadCache);
  if (r.ok) {
    assertDiagnosticsInBounds(r.warnings, files, lineEnd);
    return true;
  }
  assert.ok(r.diagnostics.some((d) => d.severity === 'error'), 'a failed load names an error');
  assertDiagnosticsInBounds(r.diagnostics, files, lineEnd);
  return false;
}


describe('fuzz: policy loader', () => {
  test('mutated example files load, or fail at a file and line of the text', (t) => {
    let loaded = 0;
    checkProperty(
      t,
      'compileFromTexts on mutated files',
      fc.property(mutatedSetArb, (files) => {
        if (checkMutatedLoad(files, true)) loaded++;
      }),
      300,
    );
    t.diagnostic(`${loaded} mutated sets loaded`);
    assert.ok(loaded > 10, `only ${loaded} mutated sets loaded: the warnings check checked little`);
  });

});

/** Why a prefix that loosened did so: the three ways a torn file can read as a smaller policy set. */
function tornKind(full: string, cut: number): string {
  const prefix = full.slice(0, cut);
  const documents = Array.from(parseAllDocuments(prefix)).filter((d) => d.contents !== null).length;
  if (documents === 0) return 'the prefix holds no document';
  if (/^\s*---/.test(full.slice(cut)) || /(^|\n)---[ \t]*\n?$/.test(prefix)) return 'cut at a `---` document boundary';
  return 'cut inside a document';
}

/** The files whose truncation is checked: each example that holds a DENY policy, and the one-file layout. */
const TORN_TARGETS: { files: PolicySourceFile[]; target: PolicySourceFile }[] = [
  ...POLICY_FILES.filter((f) => /^\s*action:\s*DENY\b/m.test(f.text)).map((target) => ({ files: POLICY_FILES, target })),
  { files: [ONE_FILE], target: ONE_FILE },
];

/** The snapshot of `files` with `target` cut to `cut` characters, or why it does not load. */
function loadTorn(files: readonly PolicySourceFile[], target: PolicySourceFile, cut: number, cache?: PolicyLoadCache): ReturnType<typeof compileFromTexts> {
  return load(files.map((f) => (f === target ? { path: f.path, text: f.text.slice(0, cut) } : f)), cache);
}

/**
 * The cuts that leave a file with no policy where it had some and that a loader can tell from a
 * finished file: every prefix that holds no document yet (empty, the comment header), and every
 * prefix that ends in the empty document a `---` opens (marker, blank and comment lines after it).
 */
function documentlessCuts(text: string): number[] {
  const cuts: number[] = [];
  for (let cut = 0; cut <= text.length; cut++) {
    if (Array.from(parseAllDocuments(text.slice(0, cut))).some((d) => d.contents !== null)) break;
    cuts.push(cut);
  }
  for (const m of text.matchAll(/^---[ \t]*\n(?:[ \t]*(?:#.*)?\n)*/gm)) {
    for (let cut = m.index + 3; cut <= m.index + m[0].length; cut++) cuts.push(cut);
  }
  return cuts;
}

// What content cannot tell: a prefix that ends after a complete rule or document is itself a
// valid file (this property, run over every offset, found 2 of 850 prefixes of
// deny-link-local.yaml and 333 of 4,923 of the one-file layout that load and drop DENY rules).
// No loader can tell such a cut from a finished file; the gateway's defences are the stable,
// settled read of files being written (src/policy/sources.ts, test/policy/sources.test.ts) and,
// as the guarantee, atomic replacement (docs/operating.md, "Updating policies safely"). The
// property stays, skipped, as the record of that limit and a way to measure it again.
const TORN_LIMIT = 'content cannot tell a clean cut from a finished file: see the comment above';

describe('fuzz: a torn policy file never loosens enforcement', () => {
  // As reloadCache above, one per file set (a cache holds its last committed load's files): the
  // files beside the torn one come from it, the torn one never does.
  const tornCaches = new Map(TORN_TARGETS.map(({ files }) => [files, new PolicyLoadCache()] as const));
  const full = new Map(
    TORN_TARGETS.map(({ files }) => {
      const r = compileFromTexts(files, 1, undefined, tornCaches.get(files));
      assert.ok(r.ok);
      return [files, r.snapshot] as const;
    }),
  );

  test('a DENY-holding file cut where it holds no document, or right after a `---`, does not load', (t) => {
    checkProperty(
      t,
      'torn DENY file without a document at its end',
      fc.property(
        fc.oneof(...TORN_TARGETS.map((target, i) => fc.tuple(fc.constant(i), fc.constantFrom(...documentlessCuts(target.target.text))))),
        ([i, cut]) => {
          const { files, target } = TORN_TARGETS[i]!;
          const r = loadTorn(files, target, cut, tornCaches.get(files));
          assert.equal(r.ok, false, `${target.path} cut at ${cut} loads: ${JSON.stringify(target.text.slice(Math.max(0, cut - 60), cut))}`);
        },
      ),
      150,
    );
  });

  // WAYGATE_FUZZ_SEED=12202611, run 10: policies/all.yaml cut at offset 2733, right after the
  // deny-dev document and before its `---`, loads and drops deny-link-local.
  test('a prefix of a DENY-holding file that loads denies everything the full set denies', { skip: TORN_LIMIT }, (t) => {
    checkProperty(
      t,
      'torn DENY file',
      fc.property(
        fc.oneof(...TORN_TARGETS.map((target, i) => fc.tuple(fc.constant(i), cutArb(target.target.text)))),
        ([i, cut]) => {
          const { files, target } = TORN_TARGETS[i]!;
          const r = loadTorn(files, target, cut);
          if (!r.ok) return;
          const worse = loosened(full.get(files)!, r.snapshot);
          assert.deepEqual(
            worse,
            [],
            `${target.path} cut at offset ${cut} of ${target.text.length} (${tornKind(target.text, cut)}) loads and loosens; ` +
              `the file ends: ${JSON.stringify(target.text.slice(Math.max(0, cut - 80), cut))}`,
          );
        },
      ),
      300,
      { shrink: false },
    );
  });
});

/** The example file at `path`. */
function example(path: string): PolicySourceFile {
  const f = EXAMPLES.find((e) => e.path === path);
  assert.ok(f, path);
  return f;
}

describe('fuzz regressions: policy loader', () => {
  const denyDev = example('policies/deny-dev.yaml');
  const denyLinkLocal = example('policies/deny-link-local.yaml');
  const firstMarker = ONE_FILE.text.indexOf('\n---\n');

  test('an empty DENY file does not load', () => {
    assert.equal(loadTorn(POLICY_FILES, denyDev, 0).ok, false);
  });

  test('a DENY file cut inside its comment header does not load', () => {
    assert.equal(loadTorn(POLICY_FILES, denyDev, denyDev.text.indexOf('apiVersion')).ok, false);
  });

  test('the one-file layout cut right after its first `---` does not load', () => {
    assert.equal(loadTorn([ONE_FILE], ONE_FILE, firstMarker + 5).ok, false);
  });

  // The two smallest inputs the torn-file property fails on (every cut offset of the targets was
  // tried: 2 of 850 prefixes of deny-link-local.yaml and 333 of 4,923 of all.yaml load and loosen).
  test('the one-file layout cut just before its first `---` does not loosen', { skip: TORN_LIMIT }, () => {
    const r = loadTorn([ONE_FILE], ONE_FILE, firstMarker + 1);
    if (r.ok) assert.deepEqual(loosened(full(ONE_FILE), r.snapshot), []);
  });

  test('deny-link-local.yaml cut after its first containsIP does not loosen', { skip: TORN_LIMIT }, () => {
    const cut = denyLinkLocal.text.indexOf(' || cidr("fe80');
    const r = loadTorn(POLICY_FILES, denyLinkLocal, cut);
    if (r.ok) assert.deepEqual(loosened(full(denyLinkLocal), r.snapshot), []);
  });

  // WAYGATE_FUZZ_SEED=12202611, run 312 of the property above with lineEnd true:
  // deny-link-local.test.yaml with one line indented, two lines swapped and the first duplicated
  // was reported at 29:104 on an 89-character line. The minimal input puts its `:` of line 3 at 2:6.
  const seedCase = example('policies/deny-link-local.test.yaml');
  const columnCases: [string, string][] = [
    ['the seed\'s input', mutateYaml(seedCase.text, [{ op: 'indent', line: 852282082, delta: 1 }, { op: 'swapLines', line: 972328954 }, { op: 'duplicateLine', line: 0 }])],
    ['minimal', ' :\nr\n  y:'],
  ];
  for (const [name, text] of columnCases) {
    test(`a syntax error is reported inside its line: ${name}`, () => {
      const r = load([{ path: seedCase.path, text }]);
      assert.equal(r.ok, false);
      if (!r.ok) assertDiagnosticsInBounds(r.diagnostics, [{ path: seedCase.path, text }], true);
    });
  }
});

/** The full policy set's snapshot when `file` is whole. */
function full(file: PolicySourceFile): PolicySnapshot {
  const r = compileFromTexts(file === ONE_FILE ? [ONE_FILE] : POLICY_FILES, 1);
  assert.ok(r.ok);
  return r.snapshot;
}
