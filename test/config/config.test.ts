import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { parseAllowDestinations, parseHostPort } from '../../src/config/address.ts';
import { addServeFlags, flagsToLayer, type ServeFlagValues } from '../../src/config/flags.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { defaultDrainTimeoutMs, embeddedDefaults, productionDefaults } from '../../src/config/schema.ts';
import { HEADER, errorsOf } from './fixture.ts';

const run = promisify(execFile);
const BIN = new URL('../../bin/waygate.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'waygate-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));


describe('strict config loading', () => {
  test('unknown field: file:line:col and field path', () => {
    const err = errorsOf(`${HEADER}  tls:\n    certFle: /x.crt\n`);
    assert.equal(err.diagnostics.length, 1);
    const d = err.diagnostics[0]!;
    assert.deepEqual([d.file, d.line, d.col, d.path, d.code], ['gw.yaml', 5, 5, 'spec.tls.certFle', 'WG_CONFIG']);
    assert.match(d.message, /unknown field "certFle"/);
    assert.match(err.message, /^1 config error\(s\):\ngw\.yaml:5:5: error WG_CONFIG at spec\.tls\.certFle/);
  });

  test('every problem is reported in one pass, each at its position', () => {
    const err = errorsOf(
      `${HEADER}  listen: 15008\n  defaultAction: MAYBE\n  limits:\n    maxStreamsPerConnection: 0\n  workers: many\n  listn: x\n`,
    );
    const got = err.diagnostics.map((d) => [d.line, d.col, d.path]);
    assert.deepEqual(got, [
      [4, 11, 'spec.listen'],
      [5, 18, 'spec.defaultAction'],
      [7, 30, 'spec.limits.maxStreamsPerConnection'],
      [8, 12, 'spec.workers'],
      [9, 3, 'spec.listn'],
    ]);
  });

  const table: [string, string, RegExp][] = [
    ['wrong apiVersion', 'apiVersion: v1\nkind: GatewayConfig\nspec: {}\n', /must be one of waygate\.dev\/v1alpha1/],
    ['wrong kind', 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nspec: {}\n', /must be one of GatewayConfig/],
    ['missing spec', 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\n', /missing required field "spec"/],
    ['two documents', `${HEADER}  workers: 1\n---\n${HEADER}  workers: 2\n`, /exactly one GatewayConfig document/],
    ['YAML syntax', `${HEADER}  listen: [\n`, /./],
    ['admin not loopback', `${HEADER}  admin:\n    adminAddress: 0.0.0.0:15000\n`, /not a loopback address/],
    ['deny status', `${HEADER}  denyStatus: 404\n`, /must be one of 401, 403/],
    ['bad CIDR', `${HEADER}  destinations:\n    allow:\n      - cidr: 10.0.0.0/33\n`, /prefix length 33 exceeds 32/],
    ['empty port list', `${HEADER}  destinations:\n    allow:\n      - { cidr: 10.0.0.0/8, ports: [] }\n`, /omit "ports"/],
    ['route to a name', `${HEADER}  destinations:\n    routes:\n      "db.local:5432": "db:5432"\n`, /must be ip:port/],
    ['duplicate key', `${HEADER}  workers: 1\n  workers: 2\n`, /duplicate field "workers"/],
    ['trust domain', `${HEADER}  trustDomains: ["Cluster.Local"]\n`, /not a SPIFFE trust domain/],
  ];
  for (const [name, text, message] of table) {
    test(`rejects: ${name}`, () => {
      const err = errorsOf(text);
      assert.ok(err.diagnostics.some((d) => message.test(d.message)), err.message);
      for (const d of err.diagnostics) assert.ok(d.line >= 1 && d.col >= 1, err.message);
    });
  }

  test('a valid file: relative paths resolve against its directory, the rest stays as written', () => {
    const layer = parseConfigText(
      `${HEADER}  listen: "[::1]:15008"\n  tls:\n    certFile: certs/tls.crt\n    trustBundleFiles: [/abs/ca.crt]\n` +
        `  destinations:\n    allow:\n      - cidr: 10.0.0.0/8\n        ports: [8080, 5432]\n      - cidr: fd00::/8\n    routes:\n      "DB.local:5432": 10.0.3.4:5432\n` +
        `  workers: auto\n`,
      'gw.yaml',
      '/etc/waygate',
    );
    assert.equal(layer.listen, '[::1]:15008');
    assert.deepEqual(layer.tls, { certFile: '/etc/waygate/certs/tls.crt', trustBundleFiles: ['/abs/ca.crt'] });
    assert.deepEqual(layer.destinations, {
      allow: [{ cidr: '10.0.0.0/8', ports: [8080, 5432] }, { cidr: 'fd00::/8' }],
      routes: { 'db.local:5432': '10.0.3.4:5432' },
    });
    assert.equal(layer.workers, 'auto');
  });

  test('regression: a relative audit.destination resolves against the config file, "-" stays stdout', () => {
    const rel = parseConfigText(`${HEADER}  audit:\n    destination: logs/audit.jsonl\n`, 'gw.yaml', '/etc/waygate');
    assert.equal(rel.audit?.destination, '/etc/waygate/logs/audit.jsonl');
    const stdout = parseConfigText(`${HEADER}  audit:\n    destination: "-"\n`, 'gw.yaml', '/etc/waygate');
    assert.equal(stdout.audit?.destination, '-');
  });
});

describe('defaults and layering', () => {
  test('drain deadline follows TERMINATION_GRACE_PERIOD_SECONDS like ztunnel', () => {
    const cases: [string | undefined, number][] = [[undefined, 5000], ['30', 25000], ['11', 6000], ['10', 9000], ['1', 1000], ['0', 1000], ['abc', 5000]];
    for (const [value, expected] of cases) {
      const env = value === undefined ? {} : { TERMINATION_GRACE_PERIOD_SECONDS: value };
      assert.equal(defaultDrainTimeoutMs(env), expected, `TERMINATION_GRACE_PERIOD_SECONDS=${value}`);
    }
  });

  test('embedded profile is loopback-only; production listens everywhere but allows no destination', () => {
    const e = embeddedDefaults('/repo', {});
    for (const a of [e.listen, e.admin.readyAddress, e.admin.metricsAddress, e.admin.adminAddress]) assert.match(a, /^127\.0\.0\.1:/);
    assert.deepEqual(e.destinations.allow, [{ cidr: '127.0.0.0/8' }, { cidr: '::1/128' }]);
    assert.equal(e.tls.certFile, '/repo/.waygate/pki/server.crt');
    assert.deepEqual(e.tls.trustBundleFiles, ['/repo/.waygate/pki/root.crt']);
    assert.deepEqual(e.policies.paths, ['/repo/policies']);
    const p = productionDefaults({});
    assert.equal(p.listen, '0.0.0.0:15008');
    assert.equal(p.admin.adminAddress, '127.0.0.1:15000');
    assert.deepEqual(p.destinations.allow, []);
  });

  test('flags override the file, which overrides the defaults; lists replace, mappings merge', () => {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, `${HEADER}  listen: 0.0.0.0:16008\n  trustDomains: [a.example]\n  timeouts:\n    connectTimeoutMs: 3000\n  log:\n    level: debug\n`);
    const cmd = addServeFlags(new Command('serve').exitOverride());
    cmd.parse(['--listen', '127.0.0.2:1', '--trust-domain', 'b.example', '--trust-domain', 'c.example',
      '--allow-destinations', '10.0.0.0/8:80+443,192.168.1.7', '--policies', 'pol', '--audit-log', '-', '--workers', 'auto',
      '--drain-timeout-ms', '1234', '--no-watch', '--route', 'db.local:5432=10.0.0.9:5432'], { from: 'user' });
    const layer = flagsToLayer(cmd.opts<ServeFlagValues>(), '/work');
    const { config, profile } = resolveConfig({ configFile: file, flags: layer, env: {} });
    assert.equal(profile, 'production');
    assert.equal(config.listen, '127.0.0.2:1');
    assert.deepEqual(config.trustDomains, ['b.example', 'c.example']);
    assert.deepEqual(config.destinations.allow, [{ cidr: '10.0.0.0/8', ports: [80, 443] }, { cidr: '192.168.1.7' }]);
    assert.deepEqual(config.destinations.routes, { 'db.local:5432': '10.0.0.9:5432' });
    assert.deepEqual(config.policies, { paths: ['/work/pol'], watch: false, debounceMs: 250 });
    assert.deepEqual(config.timeouts, { connectTimeoutMs: 3000, handshakeTimeoutMs: 10000, drainTimeoutMs: 1234, idleTimeoutMs: 0 });
    assert.equal(config.log.level, 'debug');
    assert.equal(config.audit.destination, '-');
    assert.equal(config.workers, 'auto');
    assert.ok(Object.isFrozen(config.timeouts));
  });

  test('--print-config output is itself a valid config that loads to the same values', () => {
    const effective = resolveConfig({ cwd: '/repo', env: {} });
    const file = join(dir, 'printed.yaml');
    writeFileSync(file, configToYaml(effective));
    const reparsed = resolveConfig({ configFile: file, env: {} });
    assert.deepEqual(reparsed.config, effective.config);
  });
});

describe('address syntax', () => {
  test('host:port forms', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:0'), { ok: true, value: { host: '127.0.0.1', port: 0 } });
    assert.deepEqual(parseHostPort('[::1]:15008'), { ok: true, value: { host: '::1', port: 15008 } });
    for (const bad of ['15008', 'example.com:80', '::1:80', '127.0.0.1:70000', '127.0.0.1:']) assert.equal(parseHostPort(bad).ok, false, bad);
  });

  test('--allow-destinations entries', () => {
    const ok: [string, unknown][] = [
      ['10.0.0.0/8', [{ cidr: '10.0.0.0/8' }]],
      ['10.0.0.0/8:8080', [{ cidr: '10.0.0.0/8', ports: [8080] }]],
      ['10.1.2.3:80+443, fd00::/8:443', [{ cidr: '10.1.2.3', ports: [80, 443] }, { cidr: 'fd00::/8', ports: [443] }]],
      ['::1', [{ cidr: '::1' }]],
    ];
    for (const [text, expected] of ok) assert.deepEqual(parseAllowDestinations(text), { ok: true, value: expected }, text);
    for (const bad of ['', '10.0.0.0/8:0', '10.0.0.0/8:http', 'example.com', '10.0.0.0/40']) assert.equal(parseAllowDestinations(bad).ok, false, bad);
  });

  // The loader and the server parse allow entries with one grammar (src/net/address.ts
  // parseAllowedNetwork): a bare IP, as `--allow-destinations 127.0.0.1:8080` writes it, used to pass
  // the loader and then stop the server at start ("has no /<prefix length>").
  test('what the loader accepts, the server compiles: bare IPs are single hosts', () => {
    for (const text of ['127.0.0.1:8080', '::1', '10.1.2.3:80+443, fd00::/8:443']) {
      const parsed = parseAllowDestinations(text);
      assert.ok(parsed.ok, text);
      const policy = new DestinationPolicy({ allow: parsed.value });
      assert.ok(policy instanceof DestinationPolicy, text);
    }
    const one = new DestinationPolicy({ allow: [{ cidr: '127.0.0.1', ports: [8080] }] });
    assert.equal(one.check('127.0.0.1', 8080), 'ok');
    assert.equal(one.check('127.0.0.2', 8080), 'not_allowed');
    assert.equal(new DestinationPolicy({ allow: [{ cidr: 'fd00::1' }] }).check('fd00::2', 443), 'not_allowed');
    const layer = parseConfigText(`${HEADER}  destinations:\n    allow:\n      - cidr: 10.1.2.3\n        ports: [443]\n`, 'c.yaml');
    assert.equal(new DestinationPolicy({ allow: layer.destinations!.allow! }).check('10.1.2.3', 443), 'ok');
  });
});

describe('waygate serve flags (the CLI)', () => {
  test('--print-config prints the effective config and exits 0', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'serve', '--print-config', '--listen', '127.0.0.1:25008', '--deny-status', '403']);
    assert.match(stdout, /^# effective config \(profile: embedded\)\napiVersion: waygate\.dev\/v1alpha1\nkind: GatewayConfig\n/);
    assert.match(stdout, /\n  listen: 127\.0\.0\.1:25008\n/);
    assert.match(stdout, /\n  denyStatus: 403\n/);
    assert.doesNotMatch(stdout, /PRIVATE KEY/);
  });

  test('a bad flag value prints one error line and a hint (not the whole usage) and exits 2', async () => {
    await assert.rejects(run(process.execPath, [BIN, 'serve', '--listen', 'nowhere']), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /nowhere/);
      assert.match(err.stderr, /\nhint: `waygate serve --help` lists its arguments, flags and the values they take\n$/);
      assert.doesNotMatch(err.stderr, /Usage: waygate serve/);
      return true;
    });
  });

  test('an invalid config file names file:line:col and exits 2', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, `${HEADER}  listen: 127.0.0.1:1\n  bogus: true\n`);
    await assert.rejects(run(process.execPath, [BIN, 'serve', '--config', file, '--print-config']), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.ok(err.stderr.includes(`${file}:5:3: error WG_CONFIG at spec.bogus: unknown field "bogus"`), err.stderr);
      return true;
    });
  });
});
