/**
 * `npm start` as a person sees it (docs/operating.md, "Starting it" and "Logs"): the embedded
 * profile writes its audit log to `.waygate/audit.jsonl` and says so at start-up, so `waygate
 * audit` reads it back as written; the operational log is JSON on a pipe and one readable line
 * per event on a terminal (a real pseudo-terminal from util-linux `script`). Real processes
 * (bin/waygate.js, the compiled output: `npm run build` first).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT, runWaygate } from '../../examples/traffic/gateway-process.ts';
import { spawnServe, WAYGATE_BIN } from '../helpers/serve.ts';
import { within } from '../helpers/wait.ts';

const EPHEMERAL = ['--listen', '127.0.0.1:0', '--ready-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'];

describe('npm start (the embedded profile)', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'waygate-serve-embedded-'));
    cpSync(path.join(REPO_ROOT, 'policies'), path.join(work, 'policies'), { recursive: true });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('--print-config shows the audit log in .waygate/', async () => {
    const r = await runWaygate(['serve', '--print-config'], { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), new RegExp(`destination: ${path.join(work, '.waygate', 'audit.jsonl').replace(/[.]/g, '\\.')}\\n`));
  });

  test('the audit log goes to .waygate/audit.jsonl, the log says so, stdout stays empty, `waygate audit` reads it', async () => {
    const serve = spawnServe(EPHEMERAL, { cwd: work });
    let stdout = '';
    serve.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    try {
      const where = await serve.waitForLine((l) => String(l['msg']).startsWith('audit records go to'), { what: 'audit location line' });
      assert.equal(where['msg'], 'audit records go to .waygate/audit.jsonl (review them with: waygate audit summary .waygate/audit.jsonl)');
      assert.equal(where['audit'], path.join(work, '.waygate', 'audit.jsonl'));
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    } finally {
      await serve.stop('SIGKILL');
    }
    assert.equal(stdout, '', 'no audit record on stdout');
    const records = readFileSync(path.join(work, '.waygate', 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(records.map((r) => [r['event'], r['trigger'], r['result']]), [['reload', 'startup', 'applied']]);
    const summary = await runWaygate(['audit', 'summary', '.waygate/audit.jsonl'], { cwd: work });
    assert.equal(summary.code, 0, summary.stderr);
  });

  test('--audit-log - still sends the records to stdout', async () => {
    const serve = spawnServe([...EPHEMERAL, '--audit-log', '-'], { cwd: work });
    try {
      const where = await serve.waitForLine((l) => String(l['msg']).startsWith('audit records go to'), { what: 'audit location line' });
      assert.equal(where['msg'], 'audit records go to stdout');
    } finally {
      await serve.stop('SIGKILL');
    }
  });
});

/** True when util-linux `script` can give a child a pseudo-terminal here. */
function hasScript(): boolean {
  return spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
}

function post(address: string, urlPath: string): Promise<number> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: urlPath, method: 'POST' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the operational log on a terminal', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'waygate-serve-tty-'));
    cpSync(path.join(REPO_ROOT, 'policies'), path.join(work, 'policies'), { recursive: true });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('is one human-readable line per event (pino-pretty), not JSON', { skip: hasScript() ? false : 'util-linux script is not installed' }, async () => {
    const command = [process.execPath, WAYGATE_BIN, 'serve', ...EPHEMERAL].map((a) => `'${a}'`).join(' ');
    // `script` runs the command on a new pseudo-terminal: its stdout and stderr are a TTY.
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: work, stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let text = '';
    let onText: (() => void) | undefined;
    child.stdout.on('data', (c: Buffer) => {
      // Colours stripped: the assertions are about the text.
      text += c.toString().replace(/\u001b\[[0-9;]*m/g, '').replace(/\r/g, '');
      onText?.();
    });
    const waitFor = (re: RegExp): Promise<RegExpMatchArray> => within(new Promise<RegExpMatchArray>((resolve) => {
      const check = (): void => {
        const m = text.match(re);
        if (m) resolve(m);
      };
      onText = check;
      check();
    }), `terminal output matching ${re}`, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; output so far:\n${text}`);
    });
    try {
      const listening = await waitFor(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening \{.*"admin":"([^"]+)".*\}$/m);
      await waitFor(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: audit records go to \.waygate\/audit\.jsonl/m);
      assert.ok(!/^\{"level"/m.test(text), `no JSON lines on a terminal:\n${text}`);
      assert.equal(await post(listening[1]!, '/quitquitquit'), 200);
      assert.equal(await within(exited, 'exit after /quitquitquit', 30_000), 0, text);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    assert.ok(existsSync(path.join(work, '.waygate', 'audit.jsonl')));
  });
});
