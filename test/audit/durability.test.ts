/**
 * Audit durability of a real `waygate serve` (issue 16, docs/operating.md "Audit log guarantees"):
 *
 * - `kill -9` right after N answered tunnels leaves N decision records (write-ahead: the record's
 *   write returned before the 200 went out), with and without `--workers`;
 * - a full file system (a small tmpfs) gives the log line, the metrics, `audit_unavailable`
 *   refusals and not-ready, then recovery when space returns, and SIGTERM exits;
 * - a stalled stdout reader (backpressure: `slow`, no write error) is told apart from a failed
 *   write (`/dev/full`: `failed`, write errors counted).
 *
 * Every wait is for an event (a log line, an answer, an exit), never for time.
 */
// own-process: it mostly waits on the gateways it kills and the tmpfs it fills (~30 s of wall time against ~2 s of its own CPU).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuditRecord, CloseRecord, DecisionRecord } from '../../src/audit/record.ts';
import { allowPolicy, connectAs, spawnServe, type ServeProcess } from '../gateway/fixture.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';

let upstream: Upstream;
const dirs: string[] = [];
const mounts: string[] = [];
const children: ServeProcess[] = [];
before(async () => {
  upstream = await startUpstream('echo');
});
after(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await upstream.close();
  for (const m of mounts) {
    try {
      execFileSync('umount', [m]);
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'waygate-durability-'));
  dirs.push(d);
  return d;
}

/** A config like test/gateway/fixture.ts writeServeConfig's, with the audit section given. */
async function config(dir: string, audit: string, extraSpec = ''): Promise<string> {
  const { writeServeConfig } = await import('../gateway/fixture.ts');
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'client') }, extraSpec);
  const text = readFileSync(cfg.configFile, 'utf8').replace(/^ {2}audit: .*$/m, `  audit: ${audit}`);
  writeFileSync(cfg.configFile, text);
  return cfg.configFile;
}

function serve(args: string[]): ServeProcess {
  const s = spawnServe(args);
  children.push(s);
  return s;
}

function records(file: string): { records: AuditRecord[]; partial: number } {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const last = lines.pop()!; // '' when the file ends with a newline
  return { records: lines.filter((l) => l !== '').map((l) => JSON.parse(l) as AuditRecord), partial: last === '' ? 0 : 1 };
}

const decisions = (rs: AuditRecord[]): DecisionRecord[] => rs.filter((r): r is DecisionRecord => r.event === 'decision');

async function metric(metricsAddress: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('kill -9 right after N answered tunnels leaves N decision records', () => {
  for (const workers of [1, 2]) {
    for (const n of [1, 5, 200]) {
      test(`N = ${n}${workers > 1 ? `, --workers ${workers}` : ''}`, { timeout: 120_000 }, async () => {
        const dir = tmp();
        const auditFile = join(dir, 'audit.jsonl');
        const cfg = await config(dir, `{ destination: ${auditFile} }`);
        const s = serve(['--config', cfg, ...(workers > 1 ? ['--workers', String(workers)] : [])]);
        const { hbone } = await s.listening();
        // Two connections: with workers, the primary hands them to different workers.
        const sessions = await Promise.all([connectAs(hbone, 'client'), connectAs(hbone, 'client')]);
        try {
          const statuses: number[] = [];
          for (let i = 0; i < n; i += 50) {
            const batch = Array.from({ length: Math.min(50, n - i) }, (_, j) => sessions[(i + j) % 2]!.openTunnel(`127.0.0.1:${upstream.port}`));
            for (const t of await Promise.all(batch)) statuses.push(t.status);
          }
          assert.deepEqual(statuses, Array.from({ length: n }, () => 200));
          // The last 200 has been received: nothing more is given time to reach the file.
          s.child.kill('SIGKILL');
          await s.exited;
        } finally {
          for (const x of sessions) x.destroy();
        }
        const { records: rs, partial } = records(auditFile);
        assert.equal(partial, 0);
        const allowed = decisions(rs).filter((d) => d.status === 200);
        assert.equal(allowed.length, n, `decision records with status 200 in ${auditFile}`);
        assert.ok(rs.some((r) => r.event === 'reload'), 'the startup reload record');
      });
    }
  }
});

/** Fills the file system of `dir` with one file until ENOSPC; returns its path. */
function fill(dir: string): string {
  const filler = join(dir, 'filler');
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(4096, 120);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return filler;
}

function tryMountTmpfs(dir: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
    mounts.push(dir);
    return null;
  } catch (err) {
    return `cannot mount a tmpfs here (needs root, as .ci/run runs): ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`;
  }
}

describe('a full file system', () => {
  const mnt = join(mkdtempSync(join(tmpdir(), 'waygate-tmpfs-')), 'fs');
  mkdirSync(mnt);
  dirs.push(join(mnt, '..'));
  const skip = process.platform !== 'linux' ? 'tmpfs is Linux only' : tryMountTmpfs(mnt);
  if (skip) process.stderr.write(`skipping the full-disk tests: ${skip}\n`);

  test('log line, metrics, audit_unavailable and not ready; recovery when space returns; SIGTERM exits', { skip: skip ?? false, timeout: 120_000 }, async () => {
    const dir = tmp();
    const auditFile = join(mnt, 'audit.jsonl');
    const cfg = await config(dir, `{ destination: ${auditFile} }`, '  timeouts: { drainTimeoutMs: 500 }');
    const s = serve(['--config', cfg]);
    const addr = await s.listening();
    const session = await connectAs(addr.hbone, 'client');
    let answered = 0;
    try {
      const first = await session.openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(first.status, 200);
      first.stream.destroy();

      const filler = fill(mnt);
      // The audit file's last page may still hold a record or two (tmpfs allocates pages); the
      // first CONNECT whose record's write fails is refused.
      answered = 1;
      for (;;) {
        const t = await session.openTunnel(`127.0.0.1:${upstream.port}`);
        t.stream.destroy();
        if (t.status === 503) break;
        assert.equal(t.status, 200);
        assert.ok(++answered < 50, 'a write failed before the page filled');
      }
      const line = await s.waitForLine((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('audit log write failed'));
      assert.equal(line['code'], 'ENOSPC');
      // While it lasts: every new CONNECT is refused at once, not ready, and counted.
      const again = await session.openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(again.status, 503);
      const ready = await fetch(`http://${addr.ready}/healthz/ready`);
      assert.equal(ready.status, 503);
      assert.match(await ready.text(), /audit_unavailable/);
      assert.ok((await metric(addr.metrics, 'waygate_audit_write_errors_total')) >= 1);
      assert.equal(await metric(addr.metrics, 'waygate_audit_state'), 2);
      assert.equal(await metric(addr.metrics, 'waygate_audit_refusing'), 1);

      // Space returns: the retry succeeds by itself.
      unlinkSync(filler);
      await s.waitForLine((l) => l['msg'] === 'audit log writable again');
      assert.equal((await fetch(`http://${addr.ready}/healthz/ready`)).status, 200);
      const after = await session.openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(after.status, 200);
      after.stream.destroy();

      // Full again, then SIGTERM: the process exits (the drain deadline plus the audit end's bound).
      fill(mnt);
      const last = await session.openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(last.status, 503);
      session.destroy();
      s.child.kill('SIGTERM');
      assert.equal(await s.exited, 0);
      unlinkSync(join(mnt, 'filler'));
    } finally {
      session.destroy();
    }
    // Whole lines (the last may be partial: the disk filled mid-line and the process ended).
    const { records: rs } = records(auditFile);
    const ds = decisions(rs);
    assert.ok(ds.some((d) => d.reason === 'audit_unavailable' && d.status === 503 && d.decision === 'deny'), 'the refusals are recorded once space returned');
    assert.ok(rs.some((r) => r.event === 'close' && (r as CloseRecord).closeReason === 'audit_unavailable'), 'the CONNECT whose record was in flight has its close record');
    // The tunnels answered before the disk filled, the one whose write failed (its rest written on
    // recovery, its close record saying audit_unavailable), the one after recovery.
    assert.equal(ds.filter((d) => d.status === 200).length, answered + 2);
  });
});

describe('a stalled stdout reader is told apart from a failed write', () => {
  test('stdout whose reader stops reading: slow, no write error, CONNECTs still answered (onFailure allow by default)', { timeout: 120_000 }, async () => {
    const dir = tmp();
    const cfg = await config(dir, '{ destination: "-" }');
    const s = serve(['--config', cfg]);
    // The audit log is this pipe; nobody reads it from now on.
    s.child.stdout!.pause();
    const addr = await s.listening();
    const session = await connectAs(addr.hbone, 'client');
    try {
      // Enough records to fill the pipe and the paused reader's buffer (~1 KiB each).
      const slow = s.waitForLine((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('audit log is slow'));
      let logged = false;
      void slow.then(() => (logged = true), () => undefined);
      while (!logged) {
        const batch = await Promise.all(Array.from({ length: 50 }, () => session.openTunnel(`127.0.0.1:${upstream.port}`)));
        for (const t of batch) {
          assert.equal(t.status, 200);
          t.stream.destroy();
        }
      }
      await slow;
      assert.equal(await metric(addr.metrics, 'waygate_audit_state'), 1);
      assert.equal(await metric(addr.metrics, 'waygate_audit_write_errors_total'), 0);
      assert.equal(await metric(addr.metrics, 'waygate_audit_refusing'), 0);
      assert.equal((await fetch(`http://${addr.ready}/healthz/ready`)).status, 200);
      assert.equal(s.lines.some((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('audit log write failed')), false);
      // The reader comes back: the backlog drains and the log is ok again.
      s.child.stdout!.resume();
      await s.waitForLine((l) => l['msg'] === 'audit log writable again');
      assert.equal(await metric(addr.metrics, 'waygate_audit_state'), 0);
    } finally {
      session.destroy();
    }
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  });

  test('a destination whose writes fail (/dev/full): failed, write errors counted, CONNECTs refused (file: onFailure deny)', { skip: !existsSync('/dev/full') && 'no /dev/full', timeout: 120_000 }, async () => {
    const dir = tmp();
    const cfg = await config(dir, '{ destination: /dev/full }');
    const s = serve(['--config', cfg]);
    const addr = await s.listening();
    // The startup reload record's write already failed.
    const line = await s.waitForLine((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('audit log write failed'));
    assert.equal(line['code'], 'ENOSPC');
    const session = await connectAs(addr.hbone, 'client');
    try {
      const t = await session.openTunnel(`127.0.0.1:${upstream.port}`);
      assert.equal(t.status, 503);
    } finally {
      session.destroy();
    }
    assert.equal(await metric(addr.metrics, 'waygate_audit_state'), 2);
    assert.ok((await metric(addr.metrics, 'waygate_audit_write_errors_total')) >= 1);
    assert.equal(await metric(addr.metrics, 'waygate_audit_refusing'), 1);
    assert.equal((await fetch(`http://${addr.ready}/healthz/ready`)).status, 503);
    assert.equal(s.lines.some((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('audit log is slow')), false);
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  });
});
