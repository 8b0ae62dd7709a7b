/**
 * What a test needs to run `waygate serve` as a child process with a config of its own: policies
 * and a GatewayConfig over the test PKI's files. Apart from test/gateway/fixture.ts (which
 * re-exports it) because that one imports the gateway runtime for in-process gateways (~0.5 s of
 * CPU to load), which a test that only spawns `waygate serve` does not need.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spiffe, testPki, writeTlsFiles, type TlsFiles } from './pki.ts';

/** `spiffe(sa, ns)` with the gateway tests' namespace, `prod`, as the default. */
export const spiffeId = (sa: string, ns = 'prod'): string => spiffe(sa, ns);

/** An ALLOW policy admitting the listed service accounts of `prod` to any port. */
export function allowPolicy(name: string, ...sas: string[]): string {
  const rules = sas.map((sa) => `    - name: ${sa}\n      when: source.principal == "${spiffeId(sa)}"\n`).join('');
  return `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\nspec:\n  action: ALLOW\n  rules:\n${rules}`;
}

/**
 * Writes a GatewayConfig for a child process: test PKI files, policies, all ports 0 on loopback.
 * `opts.policyPaths` replaces the policy directory as `policies.paths` (the files are still written
 * to `policyDir`); `opts.debounceMs` the watcher's debounce (20 ms by default, for quick tests).
 */
export function writeServeConfig(
  dir: string,
  policies: Record<string, string>,
  extraSpec = '',
  opts: { policyPaths?: string[]; debounceMs?: number } = {},
): { configFile: string; policyDir: string; auditFile: string; tls: TlsFiles } {
  const pki = testPki();
  const policyDir = join(dir, 'policies');
  mkdirSync(policyDir, { recursive: true });
  for (const [file, text] of Object.entries(policies)) writeFileSync(join(policyDir, file), text);
  const tls = writeTlsFiles(join(dir, 'tls'), pki.serverCert, pki.trustBundlePem);
  const auditFile = join(dir, 'audit.jsonl');
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: GatewayConfig',
    'spec:',
    '  listen: 127.0.0.1:0',
    `  tls: { certFile: ${tls.certFile}, keyFile: ${tls.keyFile}, trustBundleFiles: [${tls.caFile}] }`,
    `  policies: { paths: [${(opts.policyPaths ?? [policyDir]).join(', ')}], watch: true, debounceMs: ${opts.debounceMs ?? 20} }`,
    '  destinations: { allow: [{ cidr: 127.0.0.0/8 }] }',
    '  admin: { readyAddress: 127.0.0.1:0, metricsAddress: 127.0.0.1:0, adminAddress: 127.0.0.1:0 }',
    `  audit: { destination: ${auditFile} }`,
    extraSpec,
  ].join('\n') + '\n');
  return { configFile, policyDir, auditFile, tls };
}
