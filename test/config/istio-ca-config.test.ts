/**
 * `tls.istioCa` (src/config/schema.ts, load.ts) and the identity it asks for
 * (src/gateway/tls-source.ts): defaults filled in, strict validation at file:line:col, one source of
 * the certificate (in the file and with --cert/--key), the printed config loading back.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { flagsToLayer } from '../../src/config/flags.ts';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';
import { ISTIO_CA_DEFAULTS } from '../../src/config/schema.ts';
import { WaygateError } from '../../src/errors.ts';
import { istioCaIdentity } from '../../src/gateway/tls-source.ts';
import { HEADER, assertOneConfigError, serveFlags as flags } from './fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-istio-ca-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('tls.istioCa config', () => {
  test('an empty mapping turns it on with istio-agent\'s defaults; fields given override; null is off; the token path resolves against the file', () => {
    assert.deepEqual(parseConfigText(`${HEADER}  tls:\n    istioCa: {}\n`, 'gw.yaml', '/etc/waygate').tls, { istioCa: { ...ISTIO_CA_DEFAULTS } });
    assert.deepEqual(ISTIO_CA_DEFAULTS, {
      address: 'istiod.istio-system.svc:15012', serverName: null, tokenFile: '/var/run/secrets/tokens/istio-token', clusterId: 'Kubernetes',
      identity: null, requestedTtlMs: 86_400_000, requestTimeoutMs: 10_000, keyAlgorithm: 'RSA',
    });
    assert.deepEqual(parseConfigText(
      `${HEADER}  tls:\n    istioCa:\n      address: istiod.istio-system.svc.cluster.local:15012\n      serverName: istiod.istio-system.svc\n      tokenFile: tokens/istio-token\n      clusterId: east\n      identity: spiffe://corp.example/ns/edge/sa/waygate\n      requestedTtlMs: 3600000\n      requestTimeoutMs: 2000\n      keyAlgorithm: ECDSA\n`,
      'gw.yaml', '/etc/waygate',
    ).tls, { istioCa: {
      address: 'istiod.istio-system.svc.cluster.local:15012', serverName: 'istiod.istio-system.svc', tokenFile: '/etc/waygate/tokens/istio-token',
      clusterId: 'east', identity: 'spiffe://corp.example/ns/edge/sa/waygate', requestedTtlMs: 3_600_000, requestTimeoutMs: 2_000, keyAlgorithm: 'ECDSA',
    } });
    assert.deepEqual(parseConfigText(`${HEADER}  tls:\n    istioCa: null\n`, 'gw.yaml', '/etc').tls, { istioCa: null });
  });

  const table: [string, string, [number, number, string, RegExp]][] = [
    ['an address without a port', `${HEADER}  tls:\n    istioCa:\n      address: istiod.istio-system.svc\n`,
      [6, 16, 'spec.tls.istioCa.address', /port/]],
    ['a server name that is not a DNS name', `${HEADER}  tls:\n    istioCa:\n      serverName: "istiod_/x"\n`,
      [6, 19, 'spec.tls.istioCa.serverName', /is not a DNS name/]],
    ['an identity that is not a SPIFFE ID', `${HEADER}  tls:\n    istioCa:\n      identity: cluster.local/ns/waygate/sa/waygate\n`,
      [6, 17, 'spec.tls.istioCa.identity', /is not a SPIFFE ID/]],
    ['an identity that is not an Istio workload identity', `${HEADER}  tls:\n    istioCa:\n      identity: spiffe://cluster.local/gateway\n`,
      [6, 17, 'spec.tls.istioCa.identity', /is not an Istio workload identity/]],
    ['an empty cluster ID', `${HEADER}  tls:\n    istioCa:\n      clusterId: " "\n`,
      [6, 18, 'spec.tls.istioCa.clusterId', /must not be empty/]],
    ['a lifetime under a minute', `${HEADER}  tls:\n    istioCa:\n      requestedTtlMs: 59999\n`,
      [6, 23, 'spec.tls.istioCa.requestedTtlMs', /60000/]],
    ['a key algorithm in lower case: the hint names the spelling', `${HEADER}  tls:\n    istioCa:\n      keyAlgorithm: ecdsa\n`,
      [6, 21, 'spec.tls.istioCa.keyAlgorithm', /^must be one of RSA, ECDSA; got string "ecdsa" \(did you mean "ECDSA"\?\)$/]],
    ['a mistyped key algorithm', `${HEADER}  tls:\n    istioCa:\n      keyAlgorithm: ECDAS\n`,
      [6, 21, 'spec.tls.istioCa.keyAlgorithm', /got string "ECDAS" \(did you mean "ECDSA"\?\)$/]],
    ['a key algorithm istio-agent does not generate', `${HEADER}  tls:\n    istioCa:\n      keyAlgorithm: Ed25519\n`,
      [6, 21, 'spec.tls.istioCa.keyAlgorithm', /^must be one of RSA, ECDSA; got string "Ed25519"$/]],
    ['a key size instead of an algorithm', `${HEADER}  tls:\n    istioCa:\n      keyAlgorithm: 2048\n`,
      [6, 21, 'spec.tls.istioCa.keyAlgorithm', /^must be one of RSA, ECDSA; got number 2048$/]],
    ['an unknown field', `${HEADER}  tls:\n    istioCa:\n      caAddress: x:1\n`,
      [6, 7, 'spec.tls.istioCa.caAddress', /unknown field "caAddress"/]],
    ['files and the CA both', `${HEADER}  tls:\n    certFile: tls.crt\n    istioCa: {}\n`,
      [6, 14, 'spec.tls.istioCa', /^the certificate has one source: remove tls\.certFile and tls\.keyFile, or tls\.istioCa/]],
  ];
  for (const [name, text, [line, col, path, message]] of table) {
    test(`rejects: ${name}`, () => assertOneConfigError(text, line, col, path, message));
  }

  test('--cert or --key over a file\'s tls.istioCa is refused: the flags would be ignored', () => {
    const file = join(dir, 'ca.yaml');
    writeFileSync(file, `${HEADER}  tls:\n    istioCa: {}\n`);
    for (const argv of [['--cert', 'tls.crt'], ['--key', 'tls.key']]) {
      assert.throws(() => resolveConfig({ configFile: file, flags: flagsToLayer(flags(...argv), '/work'), env: {} }),
        (err: unknown) => err instanceof ConfigError && /the certificate has one source: --cert\/--key name files, and tls\.istioCa asks the mesh CA/.test(err.message));
    }
    // --trust-bundle is the mesh root in both modes: allowed.
    const { config } = resolveConfig({ configFile: file, flags: flagsToLayer(flags('--trust-bundle', 'root.pem'), '/work'), env: {} });
    assert.deepEqual(config.tls.trustBundleFiles, ['/work/root.pem']);
    assert.equal(config.tls.istioCa?.address, 'istiod.istio-system.svc:15012');
  });

  test('--print-config shows tls.istioCa, and what it prints loads back to the same block', () => {
    const file = join(dir, 'printed-src.yaml');
    writeFileSync(file, `${HEADER}  tls:\n    trustBundleFiles: [/var/run/secrets/istio/root-cert.pem]\n    istioCa:\n      clusterId: east\n`);
    const printed = configToYaml(resolveConfig({ configFile: file, env: {} }));
    assert.match(printed, /\n {4}istioCa:\n {6}address: istiod\.istio-system\.svc:15012\n {6}serverName: null\n {6}tokenFile: \/var\/run\/secrets\/tokens\/istio-token\n {6}clusterId: east\n {6}identity: null\n/);
    // The printed certFile/keyFile are the profile's defaults, not set by the file: a printed
    // config carries both, so load it back with the CA block only.
    const again = join(dir, 'printed.yaml');
    writeFileSync(again, `${HEADER}  tls:\n    trustBundleFiles: [/var/run/secrets/istio/root-cert.pem]\n${printed.slice(printed.indexOf('    istioCa:'), printed.indexOf('  trustDomains:'))}`);
    assert.deepEqual(resolveConfig({ configFile: again, env: {} }).config.tls, resolveConfig({ configFile: file, env: {} }).config.tls);
  });
});

describe('the identity asked of the mesh CA', () => {
  const ca = { ...ISTIO_CA_DEFAULTS };
  test('tls.istioCa.identity when set; else istio-agent\'s: the first trust domain, POD_NAMESPACE, SERVICE_ACCOUNT', () => {
    assert.equal(istioCaIdentity({ ...ca, identity: 'spiffe://corp.example/ns/edge/sa/gw' }, ['cluster.local'], {}), 'spiffe://corp.example/ns/edge/sa/gw');
    assert.equal(istioCaIdentity(ca, ['corp.example', 'cluster.local'], { POD_NAMESPACE: 'waygate', SERVICE_ACCOUNT: 'waygate' }), 'spiffe://corp.example/ns/waygate/sa/waygate');
  });
  test('neither: WG_CONFIG naming what is missing and how to set it', () => {
    assert.throws(() => istioCaIdentity(ca, ['cluster.local'], { POD_NAMESPACE: 'waygate' }),
      (err: unknown) => err instanceof WaygateError && err.code === 'WG_CONFIG' && /SERVICE_ACCOUNT not set\. Set tls\.istioCa\.identity, or the environment from the downward API/.test(err.message));
    assert.throws(() => istioCaIdentity(ca, ['cluster.local'], {}),
      (err: unknown) => err instanceof WaygateError && /POD_NAMESPACE and SERVICE_ACCOUNT not set/.test(err.message));
  });
});
