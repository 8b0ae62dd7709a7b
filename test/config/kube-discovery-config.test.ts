/**
 * `discovery.kubernetes` (src/config/schema.ts, load.ts) and `--kubeconfig` (flags.ts): defaults
 * filled in, strict validation at file:line:col, exclusive with the mesh file in the file and
 * after flags, and the printed config loading back.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Command } from 'commander';
import { addServeFlags, flagsToLayer } from '../../src/config/flags.ts';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';
import { HEADER, assertOneConfigError, serveFlags as flags } from './fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-kube-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('discovery.kubernetes config', () => {
  test('only namespaces given: the rest defaulted; the kubeconfig resolves against the file\'s directory', () => {
    assert.deepEqual(parseConfigText(`${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop, payments]\n`, 'gw.yaml', '/etc/waygate').discovery, {
      kubernetes: { namespaces: ['shop', 'payments'], labelSelector: '', clusterDomain: 'cluster.local', kubeconfig: null },
    });
    assert.deepEqual(parseConfigText(
      `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      labelSelector: "waygate.dev/fronted=true,tier in (web, api),!legacy"\n      clusterDomain: corp.example\n      kubeconfig: kube/config\n`,
      'gw.yaml', '/etc/waygate',
    ).discovery, {
      kubernetes: { namespaces: ['shop'], labelSelector: 'waygate.dev/fronted=true,tier in (web, api),!legacy', clusterDomain: 'corp.example', kubeconfig: '/etc/waygate/kube/config' },
    });
    assert.deepEqual(parseConfigText(`${HEADER}  discovery:\n    kubernetes: null\n`, 'gw.yaml', '/etc').discovery, { kubernetes: null });
  });

  const table: [string, string, [number, number, string, RegExp]][] = [
    ['no namespaces field', `${HEADER}  discovery:\n    kubernetes:\n      clusterDomain: cluster.local\n`,
      [6, 7, 'spec.discovery.kubernetes.namespaces', /missing required field "namespaces"/]],
    ['empty namespace list', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: []\n`,
      [6, 19, 'spec.discovery.kubernetes.namespaces', /name at least one namespace/]],
    ['a namespace that is not a name', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [Shop]\n`,
      [6, 20, 'spec.discovery.kubernetes.namespaces[0]', /"Shop" is not a namespace name/]],
    ['a namespace twice', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop, shop]\n`,
      [6, 19, 'spec.discovery.kubernetes.namespaces', /namespace "shop" is listed twice/]],
    ['a bad label selector', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      labelSelector: "app=echo,=x"\n`,
      [7, 22, 'spec.discovery.kubernetes.labelSelector', /"=x" is not a label selector term/]],
    ['a bad cluster domain', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      clusterDomain: "cluster..local"\n`,
      [7, 22, 'spec.discovery.kubernetes.clusterDomain', /is not a DNS domain/]],
    ['an unknown field', `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      namespace: shop\n`,
      [7, 7, 'spec.discovery.kubernetes.namespace', /unknown field "namespace" \(known: namespaces, labelSelector, clusterDomain, kubeconfig\)/]],
    ['both sources', `${HEADER}  discovery:\n    meshFile: mesh.yaml\n    kubernetes:\n      namespaces: [shop]\n`,
      [7, 7, 'spec.discovery.kubernetes', /^discovery has one source: set meshFile or kubernetes, not both$/]],
  ];
  for (const [name, text, [line, col, path, message]] of table) {
    test(`rejects: ${name}`, () => assertOneConfigError(text, line, col, path, message));
  }

  test('--kubeconfig: merged into the file\'s discovery.kubernetes, resolved against the working directory, in the usage', () => {
    const file = join(dir, 'kube.yaml');
    writeFileSync(file, `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      kubeconfig: from-file\n`);
    const { config } = resolveConfig({ configFile: file, flags: flagsToLayer(flags('--kubeconfig', 'kc.yaml'), '/work'), env: {} });
    assert.deepEqual(config.discovery.kubernetes, { namespaces: ['shop'], labelSelector: '', clusterDomain: 'cluster.local', kubeconfig: '/work/kc.yaml' });
    assert.match(addServeFlags(new Command('serve')).helpInformation(), /--kubeconfig <file> +credentials for discovery\.kubernetes/);
  });

  test('--kubeconfig without discovery.kubernetes, and --mesh over a file\'s discovery.kubernetes, are refused', () => {
    const plain = join(dir, 'plain.yaml');
    writeFileSync(plain, `${HEADER}  listen: 127.0.0.1:15008\n`);
    assert.throws(() => resolveConfig({ configFile: plain, flags: flagsToLayer(flags('--kubeconfig', 'kc.yaml'), '/work'), env: {} }),
      (err: unknown) => err instanceof ConfigError && /--kubeconfig is the credentials of Kubernetes discovery, which is not configured/.test(err.message));
    const kube = join(dir, 'kube2.yaml');
    writeFileSync(kube, `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n`);
    assert.throws(() => resolveConfig({ configFile: kube, flags: flagsToLayer(flags('--mesh', 'mesh.yaml'), '/work'), env: {} }),
      (err: unknown) => err instanceof ConfigError && /discovery has one source: --mesh \(discovery\.meshFile\) and discovery\.kubernetes are both set/.test(err.message));
  });

  test('--print-config shows discovery.kubernetes, and what it prints loads back to the same block', () => {
    const file = join(dir, 'printed-src.yaml');
    writeFileSync(file, `${HEADER}  discovery:\n    kubernetes:\n      namespaces: [shop]\n      labelSelector: app=echo\n`);
    const printed = configToYaml(resolveConfig({ configFile: file, env: {} }));
    assert.match(printed, /\n {2}discovery:\n {4}meshFile: null\n {4}kubernetes:\n {6}namespaces:\n {8}- shop\n {6}labelSelector: app=echo\n {6}clusterDomain: cluster\.local\n {6}kubeconfig: null\n/);
    const again = join(dir, 'printed.yaml');
    const spec = printed.slice(printed.indexOf('  discovery:'), printed.indexOf('  upstream:'));
    writeFileSync(again, `${HEADER}${spec}`);
    assert.deepEqual(resolveConfig({ configFile: again, env: {} }).config.discovery, resolveConfig({ configFile: file, env: {} }).config.discovery);
  });
});
