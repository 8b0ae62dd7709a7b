/**
 * `waygate serve` that cannot start (docs/operating.md "Exit codes"): a real child process, the audit log to a file, a
 * port held by this test process. Every failure prints its real cause as one line on stderr and
 * exits 1 (docs/operating.md, "Exit codes"), in single-process and workers mode.
 *
 * Regressions: with a side port taken, the audit logger was ended before SonicBoom had opened
 * its file and the process died of a TypeError from inside sonic-boom (mergeBuf), hiding the
 * EADDRINUSE; with the HBONE port taken the listen error was WG_CONFIG and exited 2; in workers
 * mode the worker died on an unhandled rejection and the primary reported "worker 1 failed".
 */
// own-process: it mostly waits on the waygate processes it starts and sees fail (~30 s of wall time against <1 s of its own CPU).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
// Not ./fixture.ts: it loads the gateway runtime, and this file only starts `waygate serve` processes.
import { spawnServe, type ServeProcess } from '../helpers/serve.ts';
import { allowPolicy, writeServeConfig } from '../helpers/serve-config.ts';

/** A port on 127.0.0.1 held by this process for the whole file. */
function holdPort(): Promise<{ server: net.Server; address: string }> {
  const server = net.createServer();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` }));
  });
}

interface Failure {
  code: number | null;
  /** stderr lines that are not the operational log's JSON. */
  plain: string[];
  /** Every stderr line as text. */
  all: string[];
}

async function failedStart(serve: ServeProcess): Promise<Failure> {
  // A gateway that starts serving instead is stopped and reported, rather than waited on forever.
  const served = serve.waitForLine((l) => l['msg'] === 'listening', { what: '"listening" line' }).then(
    async () => {
      await serve.stop('SIGKILL');
      return true;
    },
    () => false,
  );
  const code = await serve.exited;
  assert.equal(await served, false, `the gateway started serving instead of failing:\n${serve.stderr()}`);
  // 'exit' can come before the last stderr bytes were read; 'close' follows both.
  await new Promise<void>((resolve) => (serve.child.stderr!.readableEnded ? resolve() : serve.child.stderr!.once('close', () => resolve())));
  const plain = serve.lines.filter((l) => typeof l['raw'] === 'string').map((l) => l['raw'] as string).filter((t) => t.trim() !== '');
  return { code, plain, all: serve.lines.map((l) => JSON.stringify(l)) };
}

/** Exit 1, exactly one plain stderr line, the one `waygate serve: cannot start:` line, no TypeError. */
function assertOneLine(f: Failure, pattern: RegExp): string {
  const log = f.all.join('\n');
  assert.equal(f.code, 1, log);
  assert.ok(!/TypeError/.test(log), `no TypeError on stderr:\n${log}`);
  assert.equal(f.plain.length, 1, `one plain line on stderr:\n${log}`);
  const line = f.plain[0]!;
  assert.match(line, /^waygate serve: cannot start: /);
  assert.match(line, pattern);
  return line;
}

/** The audit file exists and holds whole JSON lines only (the start-up flushed and closed it). */
function auditRecords(file: string): Record<string, unknown>[] {
  assert.ok(existsSync(file), 'the audit log was opened');
  const text = readFileSync(file, 'utf8');
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), 'the audit log ends with a whole line');
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('waygate serve: start-up failures', () => {
  let held: { server: net.Server; address: string };
  const dirs: string[] = [];
  const config = (): ReturnType<typeof writeServeConfig> => {
    const dir = mkdtempSync(join(tmpdir(), 'waygate-startup-'));
    dirs.push(dir);
    return writeServeConfig(dir, { 'allow.yaml': allowPolicy('allow', 'frontend') });
  };
  before(async () => {
    held = await holdPort();
  });
  after(async () => {
    await new Promise<void>((resolve) => held.server.close(() => resolve()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const sidePorts = [
    ['--ready-address', /readiness listener \(admin\.readyAddress, --ready-address\)/],
    ['--metrics-address', /metrics listener \(admin\.metricsAddress, --metrics-address\)/],
    ['--admin-address', /admin listener \(admin\.adminAddress, --admin-address\)/],
  ] as const;

  for (const workers of ['1', '2']) {
    describe(`--workers ${workers}`, () => {
      for (const [flag, setting] of sidePorts) {
        // One side port is enough in workers mode: the primary opens all three the same way.
        if (workers === '2' && flag !== '--metrics-address') continue;
        it(`a side port in use (${flag}): EADDRINUSE naming the address, exit 1, audit log intact`, async () => {
          const cfg = config();
          const f = await failedStart(spawnServe(['--config', cfg.configFile, '--workers', workers, flag, held.address]));
          const line = assertOneLine(f, /EADDRINUSE/);
          assert.ok(line.includes(held.address), line);
          assert.match(line, setting);
          assert.match(line, /another waygate may already be running/);
          // The side ports open before anything is decided or loaded: nothing to record.
          assert.deepEqual(auditRecords(cfg.auditFile), []);
        });
      }

      it('the HBONE port in use: EADDRINUSE naming the address, exit 1, no reload record', async () => {
        const cfg = config();
        const f = await failedStart(spawnServe(['--config', cfg.configFile, '--workers', workers, '--listen', held.address]));
        const line = assertOneLine(f, /EADDRINUSE/);
        assert.ok(line.includes(held.address), line);
        assert.match(line, /HBONE listener \(listen, --listen\)/);
        assert.match(line, /another waygate may already be running/);
        // The policies loaded before the listener failed (the log says so), but a snapshot that
        // never served leaves no `reload` record: the start-up record waits for the listener.
        assert.ok(f.all.some((l) => l.includes('policy snapshot applied')), f.all.join('\n'));
        assert.deepEqual(auditRecords(cfg.auditFile), []);
      });

      it('a --policies path that does not exist: WG_POLICY_IO naming it, exit 1, no reload record', async () => {
        const cfg = config();
        const missing = join(cfg.policyDir, '..', 'polcies');
        const f = await failedStart(spawnServe(['--config', cfg.configFile, '--workers', workers, '--policies', missing]));
        const line = assertOneLine(f, /WG_POLICY_IO/);
        assert.ok(line.includes(missing), line);
        assert.match(line, /does not exist \(policies\.paths, --policies\)/);
        assert.deepEqual(auditRecords(cfg.auditFile), []);
      });

      it('a certificate file that does not exist: WG_CERT naming the file, exit 1', async () => {
        const cfg = config();
        const missing = join(cfg.tls.certFile + '.missing');
        const f = await failedStart(spawnServe(['--config', cfg.configFile, '--workers', workers, '--cert', missing]));
        const line = assertOneLine(f, /WG_CERT/);
        assert.ok(line.includes(missing), line);
        assert.match(line, /ENOENT/);
      });

      it('an audit log path that cannot be opened: WG_AUDIT naming the path, exit 1', async () => {
        const cfg = config();
        const notADir = join(cfg.policyDir, '..', 'plain-file');
        writeFileSync(notADir, 'x');
        const target = join(notADir, 'audit.jsonl');
        const f = await failedStart(spawnServe(['--config', cfg.configFile, '--workers', workers, '--audit-log', target]));
        const line = assertOneLine(f, /WG_AUDIT/);
        assert.ok(line.includes(target), line);
      });
    });
  }

  it('the embedded profile run outside the repository (no ./policies): WG_POLICY_IO naming it, exit 1', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'waygate-startup-'));
    dirs.push(cwd);
    const auditFile = join(cwd, 'audit.jsonl');
    const f = await failedStart(spawnServe(['--listen', '127.0.0.1:0', '--ready-address', '127.0.0.1:0',
      '--metrics-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--audit-log', auditFile], { cwd }));
    const line = assertOneLine(f, /WG_POLICY_IO/);
    assert.ok(line.includes(join(cwd, 'policies')), line);
    assert.deepEqual(auditRecords(auditFile), []);
  });

  describe('a mesh file (--mesh, docs/waypoint.md)', () => {
    it('that does not load stops the start: exit 1, every problem at file:line:col, a rejected mesh reload record', async () => {
      const cfg = config();
      const mesh = join(cfg.policyDir, '..', 'mesh.yaml');
      writeFileSync(mesh, [
        'apiVersion: waygate.dev/v1alpha1',
        'kind: Mesh',
        'services:',
        '  - { hostname: a.shop.svc, namespace: shop, vips: [10.96.0.1], ports: [{ port: 80 }], endpoints: [nope], bogus: 1 }',
        'workloads: []',
        '',
      ].join('\n'));
      const f = await failedStart(spawnServe(['--config', cfg.configFile, '--mesh', mesh]));
      const log = f.all.join('\n');
      assert.equal(f.code, 1, log);
      assert.match(f.plain[0] ?? '', /^waygate serve: cannot start: WG_MESH: the mesh file .*mesh\.yaml did not load:$/);
      assert.ok(f.plain.some((l) => l.includes(`${mesh}:4:`) && l.includes('no workload "nope" in namespace shop')), log);
      assert.ok(f.plain.some((l) => l.includes(`${mesh}:4:`) && l.includes('unknown field "bogus"')), log);
      const records = auditRecords(cfg.auditFile);
      const meshRecord = records.find((r) => r['source'] === 'mesh');
      assert.ok(meshRecord, 'the rejected load is recorded');
      assert.equal(meshRecord['result'], 'rejected');
      assert.equal((meshRecord['errors'] as unknown[]).length, 2);
    });

    it('that loads, with the HBONE port in use: exit 1, no reload record (neither mesh nor policy)', async () => {
      const cfg = config();
      const mesh = join(cfg.policyDir, '..', 'mesh.yaml');
      writeFileSync(mesh, 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices: []\nworkloads: []\n');
      const f = await failedStart(spawnServe(['--config', cfg.configFile, '--mesh', mesh, '--listen', held.address]));
      assertOneLine(f, /EADDRINUSE/);
      assert.ok(f.all.some((l) => l.includes('discovery snapshot applied')), f.all.join('\n'));
      assert.deepEqual(auditRecords(cfg.auditFile), []);
    });

    it('with several workers is refused (WG_CONFIG) rather than run one discovery source per worker', async () => {
      const cfg = config();
      const mesh = join(cfg.policyDir, '..', 'mesh.yaml');
      writeFileSync(mesh, 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices: []\nworkloads: []\n');
      const f = await failedStart(spawnServe(['--config', cfg.configFile, '--mesh', mesh, '--workers', '2']));
      assertOneLine(f, /WG_CONFIG: discovery\.meshFile \(--mesh\) runs with one process/);
    });
  });
});
