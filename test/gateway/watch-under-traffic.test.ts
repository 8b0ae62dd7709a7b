/**
 * Traffic must never starve a policy reload. The audit log lives in the same
 * directory as the policy file (the reported setup), so every batch of audit records raises a
 * directory event; with the debounce restarted by each of them, a revocation written by atomic
 * rename never applied while CONNECTs flowed (50 revoked CONNECTs got 200 over 8 s).
 *
 * Deterministic: CONNECTs flow back to back until the gateway logs that the revocation applied
 * (or a generous count bound is reached, which fails the test); then the revoked identity's next
 * CONNECT must be denied. No sleeps and no timing assertions: the latency is a bench/ figure.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { HboneClientSession } from '../../src/hbone/client.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { allowPolicy, connectAs, spawnServe, writeServeConfig, type ServeProcess } from './fixture.ts';

/** More than ever needed: at a few hundred CONNECTs/s the reload lands within a few hundred. */
const MAX_CONNECTS = 5_000;

let upstream: Upstream;
before(async () => {
  upstream = await startUpstream('echo');
});
after(() => upstream.close());

/**
 * One CONNECT to the echo upstream; resolves with its status once the tunnel is closed again, or
 * with {@link REVOKED_BEFORE_ANSWER}: a CONNECT allowed by the old policy whose decision record was
 * being written (write-ahead, docs/operating.md "Audit log guarantees") when the revocation
 * applied is closed as an open tunnel would be, RST_STREAM(CANCEL) with a `policy_changed` close
 * record, before its 200 went out. That is the revocation applying too.
 */
const REVOKED_BEFORE_ANSWER = -8;
async function connectOnce(session: HboneClientSession, authority: string): Promise<number> {
  let t;
  try {
    t = await session.openTunnel(authority);
  } catch (err) {
    if (/reset before a response \(RST_STREAM code 8\)/.test((err as Error).message)) return REVOKED_BEFORE_ANSWER;
    throw err;
  }
  t.stream.end();
  t.stream.resume();
  t.stream.on('error', () => undefined);
  return t.status;
}

/** Concurrent CONNECT loops: dense enough that audit writes come far more often than the debounce. */
const LOOPS = 4;

/**
 * Opens CONNECTs back to back as the `revoked` identity, LOOPS at a time, until the revocation
 * applied: the gateway logged it, or a CONNECT was denied (the log line may arrive after the first
 * denial: it travels through a pipe). Returns how many CONNECTs were made.
 */
async function trafficUntil(session: HboneClientSession, authority: string, applied: Promise<unknown>): Promise<number> {
  let done = false;
  void applied.then(() => (done = true), () => (done = true));
  let n = 0;
  const loop = async (): Promise<void> => {
    while (!done) {
      assert.ok(n < MAX_CONNECTS, `the revocation did not apply during ${MAX_CONNECTS} CONNECTs of steady traffic`);
      n++;
      if ((await connectOnce(session, authority)) !== 200) done = true;
    }
  };
  await Promise.all(Array.from({ length: LOOPS }, loop));
  await applied;
  return n;
}

function appliedByWatch(serve: ServeProcess, after: number): Promise<unknown> {
  return serve.waitForLine((l) => l['msg'] === 'policy snapshot applied' && l['trigger'] === 'watch' && serve.lines.indexOf(l) >= after);
}

/** Waits for `serve` to listen, connects as the `revoked` identity and checks it is allowed. */
async function revokedSession(serve: ServeProcess): Promise<{ session: HboneClientSession; authority: string }> {
  const listening = await serve.waitForLine((l) => l['msg'] === 'listening');
  const session = await connectAs(String(listening['hbone']), 'revoked');
  const authority = `127.0.0.1:${upstream.port}`;
  assert.equal(await connectOnce(session, authority), 200);
  return { session, authority };
}

async function stop(serve: ServeProcess, dir: string): Promise<void> {
  serve.child.kill('SIGTERM');
  await serve.exited;
  rmSync(dir, { recursive: true, force: true });
}

test('a revocation renamed into place applies under steady traffic when the audit log shares the directory (--policies DIR/p.yaml)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'waygate-starve-'));
  const policyFile = join(dir, 'p.yaml');
  writeFileSync(policyFile, allowPolicy('clients', 'frontend', 'revoked'));
  // The default debounce (250 ms): longer than the gap between two audit writes under load.
  const cfg = writeServeConfig(dir, {}, '', { policyPaths: [policyFile], debounceMs: 250 });
  assert.equal(cfg.auditFile, join(dir, 'audit.jsonl'), 'the audit log is beside the policy file');
  const serve = spawnServe(['--config', cfg.configFile]);
  try {
    const { session, authority } = await revokedSession(serve);

    const applied = appliedByWatch(serve, serve.lines.length);
    writeFileSync(join(dir, 'p.yaml.tmp'), allowPolicy('clients', 'frontend'));
    renameSync(join(dir, 'p.yaml.tmp'), policyFile);
    const made = await trafficUntil(session, authority, applied);
    assert.ok(made > 0);
    assert.equal(await connectOnce(session, authority), 401, 'the revoked identity is denied once the reload applied');
    session.destroy();
  } finally {
    await stop(serve, dir);
  }
});

test('a policy directory deleted and recreated beside the audit log is reloaded under steady traffic', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'waygate-starve-dir-'));
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'frontend', 'revoked') }, '', { debounceMs: 250 });
  const serve = spawnServe(['--config', cfg.configFile]);
  try {
    const { session, authority } = await revokedSession(serve);

    // Deleting the directory is a rejected load (the path is gone): the last good snapshot stays.
    const rejected = serve.waitForLine((l) => String(l['msg']).startsWith('policy set rejected') && l['trigger'] === 'watch');
    rmSync(cfg.policyDir, { recursive: true, force: true });
    await rejected;
    assert.equal(await connectOnce(session, authority), 200, 'the last good snapshot stays in force');

    const applied = appliedByWatch(serve, serve.lines.length);
    mkdirSync(cfg.policyDir);
    writeFileSync(join(dir, 'allow.yaml.tmp'), allowPolicy('clients', 'frontend'));
    renameSync(join(dir, 'allow.yaml.tmp'), join(cfg.policyDir, 'allow.yaml'));
    await trafficUntil(session, authority, applied);
    assert.equal(await connectOnce(session, authority), 401);
    session.destroy();
  } finally {
    await stop(serve, dir);
  }
});
