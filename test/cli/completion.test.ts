/**
 * `waygate completion bash|zsh` (issue 19 item 11): the scripts come from the command tree, so
 * every verb and every visible flag is in them, and bash itself completes with them as intended.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { bashCompletion, zshCompletion } from '../../src/cli/completion.ts';
import { main, buildProgram } from '../../src/cli/main.ts';
import { captureOutput } from '../../src/cli/output.ts';
import { TS_LOADER } from '../helpers/ts-loader.ts';

/** Every command of the tree but commander's implicit `help`, with its path ("/policy/check"). */
function* commands(cmd: Command, path = ''): Generator<[string, Command]> {
  yield [path, cmd];
  for (const sub of cmd.commands) yield* commands(sub, `${path}/${sub.name()}`);
}

/** Runs the bash script's completion function for a command line typed up to the cursor (the end). */
function bashComplete(script: string, line: string): string[] {
  const words = line.split(' ');
  const program = [
    script,
    `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})`,
    `COMP_CWORD=${words.length - 1}`,
    '_waygate_completion',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', program], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describe('waygate completion', () => {
  const program = buildProgram();
  const scripts = { bash: bashCompletion(program), zsh: zshCompletion(program) };

  it('every verb and every visible flag of every verb appears in both scripts; hidden aliases do not', () => {
    let verbs = 0;
    let flags = 0;
    for (const [path, cmd] of commands(program)) {
      if (path !== '') {
        verbs++;
        for (const s of Object.values(scripts)) assert.ok(s.includes(`'${path}'`), `${path} missing`);
      }
      for (const o of cmd.options) {
        const names = [o.short, o.long].filter((f): f is string => f !== undefined);
        for (const name of names) {
          for (const [shell, s] of Object.entries(scripts)) {
            const present = new RegExp(`['\\s]${name.replace(/[-]/g, '\\-')}[\\s':]`).test(s);
            assert.equal(present, !o.hidden, `${shell}: ${path} ${name}${o.hidden ? ' is hidden and must not be offered' : ' missing'}`);
          }
        }
        if (!o.hidden) flags++;
      }
    }
    // The tree is not empty: the checks above ran over the real verbs.
    assert.ok(verbs >= 15 && flags >= 60, `${verbs} verbs, ${flags} flags`);
    for (const s of Object.values(scripts)) assert.match(s, /--help/);
  });

  it('bash completes verbs, flags and the values of a fixed-set flag', () => {
    const s = scripts.bash;
    assert.equal(spawnSync('bash', ['-n'], { input: s, encoding: 'utf8' }).status, 0, 'bash -n');
    // Whatever verbs the tree has, in its order (the script is generated from it).
    const verbs = program.commands.map((c) => c.name());
    assert.ok(['policy', 'audit', 'certs', 'serve', 'connect', 'completion'].every((v) => verbs.includes(v)), verbs.join(' '));
    assert.deepEqual(bashComplete(s, 'waygate '), verbs);
    assert.deepEqual(bashComplete(s, 'waygate pol'), ['policy']);
    assert.deepEqual(bashComplete(s, 'waygate policy '), ['check', 'test', 'eval', 'fmt', 'import']);
    assert.deepEqual(bashComplete(s, 'waygate policy check --st'), ['--strict']);
    assert.deepEqual(bashComplete(s, 'waygate policy check policies/ -o '), ['text', 'json', 'yaml']);
    assert.deepEqual(bashComplete(s, 'waygate audit query --output j'), ['jsonl']);
    assert.deepEqual(bashComplete(s, 'waygate audit query --decision '), ['allow', 'deny']);
    assert.deepEqual(bashComplete(s, 'waygate policy fmt --d'), ['--diff']);
    assert.deepEqual(bashComplete(s, 'waygate completion '), []);
    // A flag's free value and a path argument are left to bash's file-name completion.
    assert.deepEqual(bashComplete(s, 'waygate audit summary --policies '), []);
    assert.deepEqual(bashComplete(s, 'waygate policy check '), []);
  });

  it('zsh: the script parses, and completes verbs, flags and values (where zsh is installed)', (t) => {
    if (spawnSync('zsh', ['--version']).error !== undefined) {
      t.skip('zsh is not installed here; the verb and flag checks above cover the zsh script too');
      return;
    }
    const syntax = spawnSync('zsh', ['-n'], { input: scripts.zsh, encoding: 'utf8' });
    assert.equal(syntax.status, 0, syntax.stderr);
    // Outside a completion widget words and CURRENT are plain variables, and the completion
    // system's functions are stood in for by ones printing what they were given.
    const complete = (line: string) => {
      const words = line.split(' ');
      const program = [
        'compdef() { :; }',
        '_describe() { local name=$4 e; local -a names; for e in "${(@P)name}"; do names+=("${e%%:*}"); done; print -r -- "${names[*]}"; }',
        'compadd() { shift; print -r -- "$*"; }',
        '_files() { print -r -- "<files>"; }',
        scripts.zsh,
        `words=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}; _waygate`,
      ].join('\n');
      const r = spawnSync('zsh', ['-f', '-c', program], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    assert.equal(complete('waygate '), program.commands.map((c) => c.name()).join(' '));
    assert.equal(complete('waygate policy '), 'check test eval fmt import');
    assert.match(complete('waygate policy check --st'), /(^| )--strict( |$)/);
    assert.doesNotMatch(complete('waygate policy check -'), /--format/);
    assert.equal(complete('waygate audit query -o '), 'text jsonl csv');
    assert.equal(complete('waygate audit summary --policies '), '<files>');
    assert.equal(complete('waygate policy check '), '<files>');
  });

  it('the verb prints the script for the shell asked, and refuses another (exit 2)', async () => {
    const bash = await captureOutput(() => main(['completion', 'bash']));
    assert.equal(bash.value, 0);
    assert.equal(bash.stdout, scripts.bash);
    const zsh = await captureOutput(() => main(['completion', 'zsh']));
    assert.equal(zsh.stdout, scripts.zsh);
    assert.match(zsh.stdout, /^#compdef waygate\n/);
    const fish = spawnSync(process.execPath, [...TS_LOADER, '--input-type=module', '-e',
      `import { main } from ${JSON.stringify(new URL('../../src/cli/main.ts', import.meta.url).href)}; process.exitCode = await main(['completion', 'fish']);`], { encoding: 'utf8' });
    assert.equal(fish.status, 2);
    assert.match(fish.stderr, /^error: command-argument value 'fish' is invalid for argument 'shell'\. expected one of bash, zsh\n/);
  });
});
