/**
 * The README's first hour runs as written (issue 19 item 12): every command in the `sh` blocks of
 * its "Quick start", "Writing policies" and "Reviewing decisions" sections, extracted from README.md itself so the
 * document and this test cannot drift apart, run in order by bash in a fresh clone.
 *
 * The fresh clone is `git clone` of this repository's HEAD into a temporary directory (so a README
 * edit is tested once committed), with `node_modules` a symlink to this checkout's: `npm install`
 * is the one command not executed (it needs the registry, and through the symlink it would write
 * into the shared node_modules); everything else runs as printed, `npm start` included (its
 * prestart `npm run build` runs for real in the clone, then the gateway runs on its embedded default
 * ports). The clone's dist/ is seeded with this checkout's build (test/helpers/seed-build.ts) when
 * that was compiled from exactly the sources HEAD holds, so the build finds nothing to do instead of
 * compiling the tree a second time; otherwise the clone builds from scratch (the test output says
 * which).
 *
 * Conventions the README follows and this test reads:
 * - a command ending in `&`, and `npm start`, keep running: started in the background, each counts
 *   as up when it prints a line containing "listening" (the gateway's startup line, the echo
 *   server's); they are stopped (SIGTERM: the gateway drains and flushes its audit log) after the
 *   quick start, so the review commands read a complete log;
 * - a comment line directly under a command shows its output: the text before two spaces must
 *   appear in what the command prints, and `(exit N` gives its exit code (0 otherwise);
 * - other comments (a blank line before them) are prose.
 */
// own-process: it mostly waits: every README command runs in a child process (npx, npm, waygate), ~90 s of wall time against ~1.5 s of its own CPU; in a group it would hold the run open.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildWasUpToDate, seedBuild, type SeedResult } from '../helpers/seed-build.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** One command of a README block. */
interface Step {
  command: string;
  background: boolean;
  /** Text the command prints (from the comment under it), if shown. */
  output?: string;
  exitCode: number;
}

/** The body of the `## title` section: up to the next `## ` heading. */
function section(markdown: string, title: string): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l === `## ${title}`);
  assert.ok(start >= 0, `README.md has no "## ${title}" section`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** The commands of every ```sh block of a section, continuation lines joined. */
function readmeSteps(sectionText: string): Step[] {
  const steps: Step[] = [];
  for (const block of sectionText.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    let previous: Step | null = null;
    let pending = '';
    for (const line of block[1]!.split('\n')) {
      if (pending === '' && line.startsWith('#')) {
        // A comment directly under a command shows its output; after a blank line it is prose.
        if (previous !== null && previous.output === undefined) {
          const shown = /^#\s?(.*?)(\s{2,}.*)?$/.exec(line)!;
          previous.output = shown[1]!.trim();
          const exit = /\(exit (\d+)/.exec(line);
          if (exit) previous.exitCode = Number(exit[1]);
        }
        continue;
      }
      if (line.trim() === '') {
        previous = null;
        continue;
      }
      // A command goes on after a trailing backslash or pipe, as in bash.
      if (line.endsWith('\\')) {
        pending += line.slice(0, -1);
        continue;
      }
      if (line.trimEnd().endsWith('|')) {
        pending += line + ' ';
        continue;
      }
      // A trailing `# comment` on the command line is bash's business (it ignores it).
      const command = (pending + line).trim();
      pending = '';
      const bare = command.replace(/\s+#[^'"]*$/, '').trim();
      const background = bare.endsWith('&') || bare === 'npm start';
      previous = { command: bare.replace(/&$/, '').trim(), background, exitCode: 0 };
      steps.push(previous);
    }
  }
  return steps;
}

/** The environment of a fresh shell: none of the outer `npm test`'s npm_* variables or PATH additions. */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_') && k !== 'INIT_CWD' && k !== 'NODE_OPTIONS') env[k] = v;
  env['PATH'] = (process.env['PATH'] ?? '').split(':').filter((p) => !p.includes('node_modules')).join(':');
  env['NO_COLOR'] = '1';
  return env;
}

/**
 * A command that keeps running, in its own process group so it is stopped with everything it
 * started (npm, its shell, node). The group's leader is a bash that starts the command and a reader
 * of its stdin, a pipe from this process: when the pipe closes (stop(), or this test process dying
 * for any reason, even SIGKILL) the reader sends SIGTERM to the group. So no gateway outlives the
 * test holding the default ports.
 */
class Background {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;
  constructor(readonly command: string, cwd: string) {
    // fd 3 keeps the pipe for the reader (a background job's own stdin is /dev/null). The trap is
    // set after both started, so they do not inherit it; the leader outlives its own SIGTERM to
    // report the command's exit status, also when the command exits by itself (a failed start).
    const watchdog = [
      'exec 3<&0',
      `(${command}) </dev/null &`,
      'cmd=$!',
      '(read -r _ <&3; kill -TERM 0) &',
      'exec 3<&-',
      "trap '' TERM",
      'wait "$cmd"',
      'status=$?',
      'kill -TERM 0',
      'exit "$status"',
    ].join('\n');
    this.child = spawn('bash', ['-c', watchdog], { cwd, env: shellEnv(), detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => (this.output += s));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.output += s));
    // 'close', not 'exit': it comes once every process holding the pipes is gone, the gateway
    // itself included, not just the bash in front of it.
    this.exited = new Promise((resolve) => this.child.once('close', (code) => resolve(code)));
  }

  /** Resolves when the command prints a line containing `word`; fails if it exits first. */
  waitFor(word: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!this.output.includes(word)) return;
        cleanup();
        resolve();
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`\`${this.command}\` exited (${code}) before printing "${word}":\n${this.output}`));
      };
      const cleanup = () => {
        this.child.stdout!.off('data', check);
        this.child.stderr!.off('data', check);
        this.child.off('exit', onExit);
      };
      this.child.stdout!.on('data', check);
      this.child.stderr!.on('data', check);
      this.child.once('exit', onExit);
      check();
    });
  }

  /** SIGTERM to the whole group (closing the watchdog's stdin); resolves when all of it has exited. */
  stop(): Promise<number | null> {
    this.child.stdin!.end();
    return this.exited;
  }
}

function run(command: string, cwd: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', command], { cwd, env: shellEnv(), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: stdout + stderr });
    });
  });
}

async function runStep(step: Step, cwd: string): Promise<void> {
  const r = await run(step.command, cwd);
  assert.equal(r.code, step.exitCode, `\`${step.command}\` exited ${r.code}, the README says ${step.exitCode}:\n${r.output}`);
  if (step.output !== undefined) assert.ok(r.output.includes(step.output), `\`${step.command}\` should print "${step.output}":\n${r.output}`);
}

describe('README.md runs as written from a fresh clone', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const quickStart = readmeSteps(section(readme, 'Quick start'));
  const writing = readmeSteps(section(readme, 'Writing policies'));
  const reviewing = readmeSteps(section(readme, 'Reviewing decisions'));
  let clone: string;
  let seed: SeedResult;
  const running: Background[] = [];

  before(async () => {
    clone = await mkdtemp(join(tmpdir(), 'waygate-readme-'));
    const r = spawnSync('git', ['clone', '--quiet', ROOT, clone], { encoding: 'utf8' });
    assert.equal(r.status, 0, `git clone: ${r.stderr}`);
    await symlink(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');
    seed = seedBuild(ROOT, clone);
  });

  after(async () => {
    for (const b of running) await b.stop();
    if (clone) await rm(clone, { recursive: true, force: true });
  });

  it('the sections hold the commands this test runs (a rewrite that drops them fails here)', () => {
    assert.equal(quickStart[0]?.command, 'npm install');
    assert.ok(quickStart.some((s) => s.command === 'npm start' && s.background));
    assert.ok(quickStart.filter((s) => s.command.startsWith('echo hello | npx waygate connect')).length >= 2);
    assert.ok(reviewing.length >= 8, `${reviewing.length} review commands`);
    assert.ok(writing.length >= 4, `${writing.length} policy loop commands`);
    for (const s of writing) assert.match(s.command, /(^|\|\s+)npx waygate policy /);
    for (const s of reviewing) assert.match(s.command, /^npx waygate audit /, 'the one way to run the CLI');
    // Both sections read the same log, the one npm start writes.
    for (const s of reviewing) assert.match(s.command, /\.waygate\/(audit\.jsonl|\*\.jsonl)/);
  });

  it('Quick start: npm start, then a tunnel allowed and one denied', { timeout: 600_000 }, async (t) => {
    t.diagnostic(`clone's dist/: ${seed.reason}`);
    // `npm install` is the node_modules symlink made above (see the file comment).
    for (const step of quickStart.slice(1)) {
      if (step.background) {
        const b = new Background(step.command, clone);
        running.push(b);
        await b.waitFor('listening');
      } else {
        await runStep(step, clone);
      }
    }
    // npm start's build ran for real; seeded, it had nothing to recompile (a rewrite of the build
    // info by tsc would mean the seed missed, and the clone compiled everything again).
    if (seed.seeded) assert.ok(buildWasUpToDate(clone, seed), 'npm start recompiled the seeded clone: this checkout\'s node_modules changed since its last npm run build, or the seed missed (test/helpers/seed-build.ts)');
    // Stop what keeps running: on SIGTERM the gateway drains and flushes its audit log, then exits.
    for (const b of running.splice(0).reverse()) await b.stop();
    const log = await readFile(join(clone, '.waygate/audit.jsonl'), 'utf8');
    const decisions = log.split('\n').filter((l) => l.includes('"event":"decision"')).map((l) => JSON.parse(l) as { decision: string });
    assert.deepEqual(decisions.map((d) => d.decision), ['allow', 'deny'], 'the two connects of the quick start, in .waygate/audit.jsonl');
  });

  it('Writing policies: the loop (check, test, eval, fmt) on the example policies', { timeout: 300_000 }, async () => {
    for (const step of writing) {
      assert.equal(step.background, false);
      await runStep(step, clone);
    }
  });

  it('Reviewing decisions: every command, on the log the quick start wrote', { timeout: 300_000 }, async () => {
    assert.ok(existsSync(join(clone, '.waygate/audit.jsonl')), 'the quick start ran first');
    for (const step of reviewing) {
      assert.equal(step.background, false);
      await runStep(step, clone);
    }
  });
});

describe('docs/ cites nothing outside the repository', () => {
  it('no ../shared, DESIGN.md or FACTS.md in docs/ or README.md', () => {
    const files = ['README.md', ...readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' }).map((f) => join('docs', f))];
    const outside = /\.\.\/shared|\bDESIGN\.md|\bFACTS\.md/;
    const found: string[] = [];
    for (const f of files.filter((f) => f.endsWith('.md'))) {
      readFileSync(join(ROOT, f), 'utf8').split('\n').forEach((line, i) => {
        if (outside.test(line)) found.push(`${f}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.ok(files.length > 2, 'docs/ was read');
    assert.deepEqual(found, [], 'documents citing files outside the repository');
  });
});
