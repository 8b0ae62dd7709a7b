/**
 * examples/kubernetes/ brought up against the fake Kubernetes API (test/helpers/fake-kube-api.ts):
 * the objects of the manifests as a cluster holds them after `kubectl apply -k`, `kubectl apply -f
 * fronted-namespace.yaml lockdown.yaml` and what the cluster adds (the Service's cluster IP, a
 * running pod of the Deployment, istiod's istio-ca-root-cert), with no Gateway status; then
 * `waygate serve` with the example's own gateway.yaml and policies ConfigMap, its certificate
 * asked of a stand-in for istiod's CA (test/helpers/fake-istio-ca.ts) as tls.istioCa says. Only
 * what cannot be the same on this machine changes: loopback listeners on port 0, the CA's address
 * and the token and root files, the fake API's kubeconfig (in a pod: the in-cluster credentials). Used by test/k8s/manifests.test.ts (the RBAC
 * against the calls made) and test/ship/runtime-files.test.ts (the image's files on that path).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject, type RequestLogEntry } from '../helpers/fake-kube-api.ts';
import assert from 'node:assert/strict';
import { startFakeIstioCa, type FakeIstioCa } from '../helpers/fake-istio-ca.ts';
import { testPki } from '../helpers/pki.ts';
import { startServe } from '../helpers/serve.ts';
import { httpGet } from '../../examples/traffic/gateway-process.ts';

export const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/kubernetes/', import.meta.url));
/** The Service's cluster IP in the fake cluster. */
export const EXAMPLE_CLUSTER_IP = '10.96.0.50';
/** The projected token (audience istio-ca) the stand-in for istiod accepts for the Deployment's ServiceAccount. */
const EXAMPLE_TOKEN = 'projected-token-of-waygate-waygate';

type Obj = Record<string, any>;

const docs = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(join(EXAMPLE_DIR, file), 'utf8')).map((d) => d.toJS() as Obj).filter((o) => o !== null);

export interface ExampleRun {
  /** Every request the gateway sent the API server. */
  requests: RequestLogEntry[];
  /** The Gateway as stored after the run. */
  gateway: KubeObject;
  /** GET /healthz/ready once registration reported ok. */
  readyStatus: number;
  /** The gateway's exit code after SIGTERM. */
  exitCode: number | null;
  stderr: string;
}

/** The kinds the fake API serves, of the manifests' objects (RBAC objects are checked statically). */
const SERVED = new Set(['Namespace', 'ServiceAccount', 'Service', 'Deployment', 'Gateway', 'GatewayClass', 'AuthorizationPolicy']);

function applyExampleCluster(api: FakeKubeApi): KubeObject {
  const files = ['namespace.yaml', 'serviceaccount.yaml', 'deployment.yaml', 'service.yaml', 'gateway-api.yaml', 'fronted-namespace.yaml', 'lockdown.yaml'];
  const objects = files.flatMap(docs).filter((o) => SERVED.has(o['kind']));
  let gateway: Obj | undefined;
  for (const o of objects) {
    if (o['kind'] === 'Service') o['spec'] = { ...o['spec'], clusterIP: EXAMPLE_CLUSTER_IP, clusterIPs: [EXAMPLE_CLUSTER_IP] };
    if (o['kind'] === 'Gateway') gateway = o;
    api.apply(o as KubeObject);
    if (o['kind'] !== 'Deployment') continue;
    // One running pod of it, as the ReplicaSet creates it (no IP this machine could reach).
    const ns = o['metadata']['namespace'];
    api.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${o['metadata']['name']}-0`, namespace: ns, labels: o['spec']['template']['metadata']['labels'] },
      spec: o['spec']['template']['spec'], status: { phase: 'Running' } });
    // istiod publishes the mesh root in every namespace.
    api.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio-ca-root-cert', namespace: ns }, data: { 'root-cert.pem': testPki().trustBundlePem } });
    // kustomize's configMapGenerator (kustomization.yaml): the gateway config, under the name the Deployment mounts.
    const configVolume = (o['spec']['template']['spec']['volumes'] as Obj[]).find((v) => v['name'] === 'config')!;
    api.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: configVolume['configMap']['name'], namespace: ns }, data: { 'gateway.yaml': readFileSync(join(EXAMPLE_DIR, 'gateway.yaml'), 'utf8') } });
  }
  return gateway as KubeObject;
}

/**
 * Starts the fake API with the example's cluster and `waygate serve --config <the example's
 * config>` (`bin`: an entry point other than this repository's), waits for the registration's ok
 * line, reads readiness and stops the gateway with SIGTERM; `inspect` then runs while the API
 * server is still up (its requests are not in the result). `cwd`: the gateway's working directory
 * (default: a temporary one; every path in its config is absolute).
 */
export async function runExampleAgainstFakeApi(opts: { bin?: string; cwd?: string; inspect?: (kubeconfig: string) => Promise<void> } = {}): Promise<ExampleRun> {
  const api = await startFakeKubeApi();
  let ca: FakeIstioCa | undefined;
  const work = mkdtempSync(join(tmpdir(), 'waygate-k8s-example-'));
  try {
    const gw = applyExampleCluster(api);

    const kustomization = parseYaml(readFileSync(join(EXAMPLE_DIR, 'kustomization.yaml'), 'utf8')) as Obj;
    const generator = (name: string): string[] => (kustomization['configMapGenerator'] as Obj[]).find((g) => g['name'] === name)!['files'];
    // istiod's CA, as a local gRPC server issuing for the token of the Deployment's ServiceAccount.
    const deployment = docs('deployment.yaml')[0]!;
    const podSpec = deployment['spec']['template']['spec'];
    const identity = `spiffe://cluster.local/ns/${deployment['metadata']['namespace']}/sa/${podSpec['serviceAccountName']}`;
    ca = await startFakeIstioCa({ tokens: { [EXAMPLE_TOKEN]: identity } });
    const tokenFile = join(work, 'istio-token');
    writeFileSync(tokenFile, EXAMPLE_TOKEN);
    const rootFile = join(work, 'root-cert.pem');
    writeFileSync(rootFile, ca.rootPem);
    const policies = join(work, 'policies');
    mkdirSync(policies);
    for (const f of generator('waygate-policies')) writeFileSync(join(policies, basename(f)), readFileSync(join(EXAMPLE_DIR, f)));
    const config = parseYaml(readFileSync(join(EXAMPLE_DIR, generator('waygate-config')[0]!), 'utf8')) as Obj;
    Object.assign(config['spec'], {
      listen: '127.0.0.1:0',
      // The example's own tls.istioCa, pointed at the stand-in: its address and name, the files here.
      tls: { trustBundleFiles: [rootFile], istioCa: { ...config['spec']['tls']['istioCa'], address: ca.address, serverName: ca.serverName, tokenFile } },
      admin: { readyAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0', adminAddress: '127.0.0.1:0' },
    });
    config['spec']['policies']['paths'] = [policies];
    const kubeconfig = api.writeKubeconfig(work);
    config['spec']['discovery']['kubernetes']['kubeconfig'] = kubeconfig;
    const configFile = join(work, 'gateway.yaml');
    writeFileSync(configFile, stringifyYaml(config));

    // The Deployment's environment: its literal values, and what the Downward API gives.
    const container = podSpec['containers'][0];
    const env: NodeJS.ProcessEnv = Object.fromEntries((container['env'] as Obj[]).filter((e) => 'value' in e).map((e) => [e['name'], e['value']]));
    const downward: Record<string, string> = { 'metadata.namespace': deployment['metadata']['namespace'], 'spec.serviceAccountName': podSpec['serviceAccountName'] };
    for (const e of container['env'] as Obj[]) {
      const field = e['valueFrom']?.['fieldRef']?.['fieldPath'];
      if (field !== undefined) env[e['name']] = downward[field] ?? assert.fail(`the Downward API field ${field} is not given here`);
    }
    const gateway = await startServe(['--config', configFile, '--drain-timeout-ms', '1000'], { cwd: opts.cwd ?? work, env, ...(opts.bin ? { bin: opts.bin } : {}) });
    let readyStatus = 0;
    try {
      await gateway.waitForLine((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('registration:') && l['state'] === 'ok', { what: 'registration ok line' });
      readyStatus = (await httpGet(gateway.addresses.ready, '/healthz/ready')).status;
    } finally {
      await gateway.stop('SIGTERM');
    }
    const run: ExampleRun = {
      requests: [...api.requests],
      gateway: api.get('gateway.networking.k8s.io/v1', 'Gateway', gw.metadata.namespace!, gw.metadata.name)!,
      readyStatus,
      exitCode: await gateway.exited,
      stderr: gateway.stderr(),
    };
    await opts.inspect?.(kubeconfig);
    return run;
  } finally {
    await api.close();
    await ca?.close();
    rmSync(work, { recursive: true, force: true });
  }
}
