/**
 * Fixture of the gateway (composition root) tests: a real `startGateway` from a real GatewayConfig
 * file on 127.0.0.1 port 0, TLS files from the test PKI, a policy directory the test edits, and
 * an audit sink whose records a test can await (test/helpers/sink.ts). Child processes:
 * `spawnServe` (test/helpers/serve.ts) with a config from `writeServeConfig`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReloadRecord } from '../../src/audit/record.ts';
import { resolveConfig } from '../../src/config/resolve.ts';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.ts';
import { connectHbone, type HboneClientSession } from '../../src/hbone/client.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { GATEWAY_SPIFFE_ID, testPki, type TlsFiles } from '../helpers/pki.ts';
import { spiffeId, writeServeConfig } from '../helpers/serve-config.ts';
import { RecordingSink } from '../helpers/sink.ts';

export { RecordingSink } from '../helpers/sink.ts';
export { spawnServe, type ServeProcess } from '../helpers/serve.ts';
export { allowPolicy, spiffeId, writeServeConfig } from '../helpers/serve-config.ts';

export interface TestGateway {
  gw: RunningGateway;
  sink: RecordingSink;
  dir: string;
  policyDir: string;
  tls: TlsFiles;
  /** `host:port` -> `{host, port}`. */
  hbone: { host: string; port: number };
  connect(sa: string, opts?: { expectedServerSpiffeId?: string }): Promise<HboneClientSession>;
  writePolicy(file: string, text: string): void;
  /** Resolves with the next reload record after `count` records so far. */
  nextReload(after?: number): Promise<ReloadRecord>;
  /** `GET`/`POST` against one of the side ports. */
  http(port: 'ready' | 'metrics' | 'admin', path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export function hostPort(a: string): { host: string; port: number } {
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(a.slice(i + 1)) };
}

export async function startTestGateway(opts: { policies: Record<string, string>; spec?: string }): Promise<TestGateway> {
  const pki = testPki();
  const dir = mkdtempSync(join(tmpdir(), 'waygate-gw-'));
  // The same file `waygate serve` reads in the child-process tests; its audit destination is unused
  // here because the in-process gateway writes to the RecordingSink passed below.
  const { configFile, policyDir, tls } = writeServeConfig(dir, opts.policies, opts.spec ?? '');
  const sink = new RecordingSink();
  const log = createOpsLogger({ level: (process.env['WAYGATE_TEST_LOG'] as 'info' | undefined) ?? 'silent' });
  const gw = await startGateway({ effective: resolveConfig({ configFile, env: {} }), log, audit: sink });
  const hbone = hostPort(gw.addresses.hbone);
  const sessions: HboneClientSession[] = [];
  return {
    gw, sink, dir, policyDir, tls, hbone,
    async connect(sa, o = {}) {
      const c = pki.clientFor(spiffeId(sa));
      const s = await connectHbone({
        address: hbone, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem,
        expectedServerSpiffeId: o.expectedServerSpiffeId ?? GATEWAY_SPIFFE_ID,
      });
      sessions.push(s);
      return s;
    },
    writePolicy(file, text) {
      writeFileSync(join(policyDir, file), text);
    },
    nextReload(after = sink.reloads.length) {
      return sink.nextReload(after);
    },
    http(port, path, init) {
      return fetch(`http://${gw.addresses[port]}${path}`, init);
    },
    async close() {
      for (const s of sessions) s.destroy();
      await gw.shutdown('test');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}


/** Opens an HBONE session to `address` as `prod/<sa>`. */
export function connectAs(address: string, sa: string): Promise<HboneClientSession> {
  const pki = testPki();
  const c = pki.clientFor(spiffeId(sa));
  return connectHbone({ address: hostPort(address), cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
}
