/**
 * The numeric options' one table (src/config/ranges.ts), driven over every entry: both bounds are
 * accepted and both bounds +-1 refused, with a message naming the field and the range, by the
 * config loader, by the serve flag where there is one, and by every library that takes the option
 * (the HBONE server, its HTTP/2 settings, the HBONE upstream pool, the sandwich listener). The
 * defaults of both config profiles and of the libraries are the table's, and docs/operating.md
 * shows the table as it is.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Command } from 'commander';
import { addServeFlags, type ServeFlagValues } from '../../src/config/flags.ts';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';
import { RANGE_LIST, RANGES, formatRange, type NumericRange, type RangePath } from '../../src/config/ranges.ts';
import { embeddedDefaults, productionDefaults } from '../../src/config/schema.ts';
import { EndpointBalancer } from '../../src/discovery/balancer.ts';
import { parseMeshText } from '../../src/discovery/mesh-file.ts';
import { WaygateError } from '../../src/errors.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { resolveH2Options } from '../../src/hbone/h2-settings.ts';
import { ConnectRecorder } from '../../src/hbone/records.ts';
import { Router } from '../../src/hbone/route.ts';
import { resolveServerOptions, type HboneServerOptions } from '../../src/hbone/server-options.ts';
import { createSandwichListener, type SandwichOptions } from '../../src/sandwich/listener.ts';
import { createHboneConnector, type HboneUpstreamOptions } from '../../src/upstream/hbone.ts';
import { RecordingSink } from '../helpers/sink.ts';

const HEADER = 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n';

/** A config document setting only `path` (dotted, under spec) to `value`. */
function configWith(path: string, value: number): string {
  const parts = path.split('.');
  return HEADER + parts.map((p, i) => `${'  '.repeat(i + 1)}${p}:${i === parts.length - 1 ? ` ${value}` : ''}\n`).join('');
}

function fromConfig(path: string, value: number): unknown {
  const layer = parseConfigText(configWith(path, value), 'gw.yaml', '/');
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], layer);
}

function parseFlags(args: string[]): ServeFlagValues {
  const cmd = addServeFlags(new Command('serve').exitOverride().configureOutput({ writeErr: () => {} }));
  cmd.parse(args, { from: 'user' });
  return cmd.opts<ServeFlagValues>();
}

/** One library that takes the option: `run` hands it the value (throws when refused). */
interface Probe {
  /** What the library calls the option (its messages name it). */
  name: string;
  run: (v: number) => void;
  /** The value the library uses when the option is left out, where it is observable. */
  resolvedDefault?: () => number;
}

const serverBase = (): HboneServerOptions => ({
  listen: { host: '127.0.0.1', port: 0 },
  tls: { cert: 'c', key: 'k', ca: 'a' },
  acceptedTrustDomains: ['cluster.local'],
  authorize: () => assert.fail('not called'),
  audit: new RecordingSink(),
  destinations: { allow: [] },
});
const server = (name: keyof HboneServerOptions, read: (r: ReturnType<typeof resolveServerOptions>) => number): Probe => ({
  name,
  run: (v) => void resolveServerOptions({ ...serverBase(), [name]: v }),
  resolvedDefault: () => read(resolveServerOptions(serverBase())),
});

const h2 = (name: 'maxConcurrentStreams' | 'maxHeaderListBytes'): Probe => ({
  name: `h2.${name}`,
  run: (v) => void resolveH2Options({ [name]: v }),
  resolvedDefault: () => resolveH2Options()[name],
});

const upstream = (name: keyof HboneUpstreamOptions): Probe => ({
  name: `HBONE upstream ${name}`,
  run: (v) => {
    // Nothing is dialed or read before a prepare(): creating the connector only checks its options.
    const c = createHboneConnector({ tls: () => assert.fail('no connection is made'), baggage: '', [name]: v });
    c.close();
  },
});

const MESH = 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices: []\nworkloads: []\n';
function sandwichBase(): SandwichOptions {
  const parsed = parseMeshText(MESH, 'mesh.yaml', { trustDomain: 'cluster.local', version: 1 });
  assert.ok('snapshot' in parsed);
  const routing = { snapshot: () => parsed.snapshot, allowDirect: false, allowPlaintext: false, balancer: new EndpointBalancer() };
  return {
    host: '127.0.0.1', port: 0, acceptedTrustDomains: ['cluster.local'],
    authorize: () => assert.fail('not called'),
    router: new Router(new DestinationPolicy({ allow: [] }), routing),
    recorder: new ConnectRecorder({ audit: new RecordingSink(), observer: undefined, log: undefined, headerAuditPolicy: () => ({ allow: [], redact: [] }), snapshotInfo: () => ({ version: 0, hash: '' }) }),
  };
}
const sandwich = (name: 'headerTimeoutMs' | 'connectTimeoutMs' | 'idleTimeoutMs'): Probe => ({
  name,
  // Created, never started: no socket is opened before listen().
  run: (v) => void createSandwichListener({ ...sandwichBase(), [name]: v }),
});

/**
 * Every library check of every option. A mapped type: a new table entry does not compile until it
 * says which libraries take it. `[]`: only the gateway reads it, from the validated config
 * (the policy watcher's debounce, the drain deadline, the worker count).
 */
const LIBRARIES: { readonly [P in RangePath]: readonly Probe[] } = {
  'policies.debounceMs': [],
  'timeouts.connectTimeoutMs': [server('connectTimeoutMs', (r) => r.connectTimeoutMs), sandwich('connectTimeoutMs')],
  'timeouts.handshakeTimeoutMs': [server('handshakeTimeoutMs', (r) => r.handshakeTimeoutMs), upstream('handshakeTimeoutMs')],
  'timeouts.drainTimeoutMs': [],
  'timeouts.idleTimeoutMs': [server('idleTimeoutMs', (r) => r.idleTimeoutMs), sandwich('idleTimeoutMs')],
  'limits.maxConnections': [server('maxConnections', (r) => r.maxConnections)],
  'limits.maxStreamsPerConnection': [h2('maxConcurrentStreams')],
  'limits.maxHeaderListBytes': [h2('maxHeaderListBytes')],
  'limits.maxPendingDialsPerConnection': [server('maxPendingDialsPerConnection', (r) => r.maxPendingDials)],
  'upstream.maxStreamsPerConnection': [upstream('maxStreamsPerConnection')],
  'upstream.poolIdleTimeoutMs': [upstream('poolIdleTimeoutMs')],
  'sandwich.headerTimeoutMs': [sandwich('headerTimeoutMs')],
  workers: [],
};

/** The serve flags that set an option (src/config/flags.ts). */
const FLAGS: Partial<Record<RangePath, string>> = {
  'timeouts.connectTimeoutMs': '--connect-timeout-ms',
  'timeouts.handshakeTimeoutMs': '--handshake-timeout-ms',
  'timeouts.drainTimeoutMs': '--drain-timeout-ms',
  'timeouts.idleTimeoutMs': '--idle-timeout-ms',
  'limits.maxConnections': '--max-connections',
  'limits.maxStreamsPerConnection': '--max-streams-per-connection',
  'limits.maxPendingDialsPerConnection': '--max-pending-dials-per-connection',
  workers: '--workers',
};

function refusedByConfig(r: NumericRange, v: number): void {
  assert.throws(() => fromConfig(r.path, v), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.diagnostics.length, 1, err.message);
    const d = err.diagnostics[0]!;
    assert.equal(d.path, `spec.${r.path}`);
    assert.ok(d.message.includes(formatRange(r)), `"${d.message}" names the range ${formatRange(r)}`);
    return true;
  });
}

function refusedByLibrary(r: NumericRange, p: Probe, v: number): void {
  assert.throws(() => p.run(v), (err: unknown) => {
    assert.ok(err instanceof WaygateError && err.code === 'WG_CONFIG', String(err));
    for (const part of [p.name, r.path, formatRange(r), String(v)]) {
      assert.ok(err.message.includes(part), `"${err.message}" names ${part}`);
    }
    return true;
  });
}

for (const r of RANGE_LIST) {
  describe(r.path, () => {
    const inside = [r.min, r.max];
    const outside = [r.min - 1, r.max + 1];

    test(`config: ${formatRange(r)} accepted, ${outside.join(' and ')} refused at the field with the range`, () => {
      for (const v of inside) assert.equal(fromConfig(r.path, v), v);
      for (const v of outside) refusedByConfig(r, v);
    });

    const flag = FLAGS[r.path as RangePath];
    if (flag !== undefined) {
      test(`${flag}: the same range`, () => {
        const key = flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof ServeFlagValues;
        for (const v of inside) assert.equal(parseFlags([flag, String(v)])[key], v);
        for (const v of outside) {
          const expected = v < 0 ? `"${v}" is not a non-negative integer` : `${v} is out of range ${formatRange(r)}`;
          assert.throws(() => parseFlags([flag, String(v)]), (err: Error) => err.message.includes(expected));
        }
      });
    }

    for (const p of LIBRARIES[r.path as RangePath]) {
      test(`${p.name}: ${formatRange(r)} accepted, ${outside.join(' and ')} and a fraction refused naming ${r.path} and the range`, () => {
        for (const v of inside) p.run(v);
        for (const v of outside) refusedByLibrary(r, p, v);
        refusedByLibrary(r, p, r.min + 0.5);
      });
      if (p.resolvedDefault !== undefined && r.default !== null) {
        test(`${p.name}: left out, it is the table's default ${r.default}`, () => assert.equal(p.resolvedDefault!(), r.default));
      }
    }

    if (r.default !== null) {
      test(`both config profiles default to ${r.default}`, () => {
        const read = (c: object): unknown => r.path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], c);
        assert.equal(read(productionDefaults({})), r.default);
        assert.equal(read(embeddedDefaults('/repo', {})), r.default);
      });
    }
  });
}

describe('the table', () => {
  test('every default lies in its range', () => {
    for (const r of RANGE_LIST) if (r.default !== null) assert.ok(r.default >= r.min && r.default <= r.max, r.path);
  });

  test('a duration that ends in a timer fits one: Node fires a longer setTimeout after 1 ms', () => {
    for (const r of RANGE_LIST) if (r.unit === 'ms') assert.ok(r.max <= 2 ** 31 - 1, `${r.path} max ${r.max}`);
  });

  test('the options that used to disagree now agree', () => {
    // Each was accepted by the loader and refused by a library (or vice versa) before the table.
    assert.equal(fromConfig('timeouts.handshakeTimeoutMs', 2 * 3_600_000), 7_200_000);
    upstream('handshakeTimeoutMs').run(7_200_000);
    refusedByConfig(RANGES['upstream.poolIdleTimeoutMs'], 2 ** 31);
    refusedByConfig(RANGES['timeouts.idleTimeoutMs'], 2 ** 31);
    refusedByLibrary(RANGES['timeouts.connectTimeoutMs'], server('connectTimeoutMs', (r) => r.connectTimeoutMs), 86_400_001);
    refusedByLibrary(RANGES['sandwich.headerTimeoutMs'], sandwich('headerTimeoutMs'), 0);
  });
});

describe('docs/operating.md', () => {
  const doc = readFileSync(new URL('../../docs/operating.md', import.meta.url), 'utf8');
  const row = (r: NumericRange): string =>
    `| \`${r.path}\` | ${formatRange(r)} | ${r.unit} | ${r.default === null ? 'derived' : `\`${r.default}\``} | ${r.meaning} |`;

  test('"Numeric fields" lists the table as it is, row for row', () => {
    const start = doc.indexOf('### Numeric fields\n');
    assert.ok(start >= 0, 'docs/operating.md has a "### Numeric fields" section');
    const section = doc.slice(start, doc.indexOf('\n#', start + 1));
    const rows = section.split('\n').filter((l) => l.startsWith('| `'));
    assert.deepEqual(rows, RANGE_LIST.map(row));
  });

  test('the configuration table shows the same defaults', () => {
    const configuration = doc.slice(doc.indexOf('## Configuration\n'), doc.indexOf('### Numeric fields\n'));
    for (const r of RANGE_LIST) {
      if (r.default === null) continue;
      const line = configuration.split('\n').find((l) => l.startsWith('| ') && l.split(' | ')[0]!.includes(`\`${r.path}\``));
      assert.ok(line, `the configuration table has a row for ${r.path}`);
      assert.ok(line.split(' | ')[1]!.includes(`\`${r.default}\``), `${r.path}: default ${r.default} in "${line}"`);
    }
  });
});
