/**
 * examples/kubernetes/ brought up against the fake Kubernetes API (test/helpers/fake-kube-api.ts):
 * the GatewayClass, Gateway and Service of the manifests as a cluster holds them after `kubectl
 * apply -k` (no status; the Service with the cluster IP the API server assigns), and `waygate
 * serve` with the example's own gateway.yaml and policies ConfigMap. Only what cannot be the same
 * on this machine changes: loopback listeners on port 0, the test PKI's files, the fake API's
 * kubeconfig (in a pod: the in-cluster credentials). Used by test/k8s/manifests.test.ts (the RBAC
 * against the calls made) and test/ship/runtime-files.test.ts (the image's files on that path).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startFakeKubeApi, type KubeObject, type RequestLogEntry } from '../helpers/fake-kube-api.ts';
import { testPki, writeTlsFiles } from '../helpers/pki.ts';
import { startServe } from '../helpers/serve.ts';
import { httpGet } from '../../examples/traffic/gateway-process.ts';

export const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/kubernetes/', import.meta.url));
/** The Service's cluster IP in the fake cluster. */
export const EXAMPLE_CLUSTER_IP = '10.96.0.50';

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

/**
 * Starts the fake API with the example's objects and `waygate serve --config <the example's config>`
 * (`bin`: an entry point other than this repository's), waits for the registration's ok line,
 * reads readiness, stops the gateway with SIGTERM and returns what happened.
 */
export async function runExampleAgainstFakeApi(opts: { bin?: string } = {}): Promise<ExampleRun> {
  const api = await startFakeKubeApi();
  const work = mkdtempSync(join(tmpdir(), 'waygate-k8s-example-'));
  try {
    const gatewayApi = docs('gateway-api.yaml');
    const gw = gatewayApi.find((o) => o['kind'] === 'Gateway')!;
    for (const o of gatewayApi) api.apply(o as KubeObject);
    const svc = docs('service.yaml')[0]!;
    svc['spec'] = { ...svc['spec'], clusterIP: EXAMPLE_CLUSTER_IP, clusterIPs: [EXAMPLE_CLUSTER_IP] };
    api.apply(svc as KubeObject);

    const kustomization = parseYaml(readFileSync(join(EXAMPLE_DIR, 'kustomization.yaml'), 'utf8')) as Obj;
    const generator = (name: string): string[] => (kustomization['configMapGenerator'] as Obj[]).find((g) => g['name'] === name)!['files'];
    const tls = writeTlsFiles(join(work, 'tls'), testPki().serverCert, testPki().trustBundlePem);
    const policies = join(work, 'policies');
    mkdirSync(policies);
    for (const f of generator('waygate-policies')) writeFileSync(join(policies, basename(f)), readFileSync(join(EXAMPLE_DIR, f)));
    const config = parseYaml(readFileSync(join(EXAMPLE_DIR, generator('waygate-config')[0]!), 'utf8')) as Obj;
    Object.assign(config['spec'], {
      listen: '127.0.0.1:0',
      tls: { certFile: tls.certFile, keyFile: tls.keyFile, trustBundleFiles: [tls.caFile] },
      admin: { readyAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0', adminAddress: '127.0.0.1:0' },
    });
    config['spec']['policies']['paths'] = [policies];
    config['spec']['discovery']['kubernetes']['kubeconfig'] = api.writeKubeconfig(work);
    const configFile = join(work, 'gateway.yaml');
    writeFileSync(configFile, stringifyYaml(config));

    // The Deployment's environment: its literal values, and POD_NAMESPACE as the Downward API gives it.
    const deployment = docs('deployment.yaml')[0]!;
    const container = deployment['spec']['template']['spec']['containers'][0];
    const env: NodeJS.ProcessEnv = Object.fromEntries((container['env'] as Obj[]).filter((e) => 'value' in e).map((e) => [e['name'], e['value']]));
    env['POD_NAMESPACE'] = deployment['metadata']['namespace'];
    const gateway = await startServe(['--config', configFile, '--drain-timeout-ms', '1000'], { cwd: work, env, ...(opts.bin ? { bin: opts.bin } : {}) });
    let readyStatus = 0;
    try {
      await gateway.waitForLine((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('registration:') && l['state'] === 'ok', { what: 'registration ok line' });
      readyStatus = (await httpGet(gateway.addresses.ready, '/healthz/ready')).status;
    } finally {
      await gateway.stop('SIGTERM');
    }
    return {
      requests: [...api.requests],
      gateway: api.get('gateway.networking.k8s.io/v1', 'Gateway', gw['metadata']['namespace'], gw['metadata']['name'])!,
      readyStatus,
      exitCode: await gateway.exited,
      stderr: gateway.stderr(),
    };
  } finally {
    await api.close();
    rmSync(work, { recursive: true, force: true });
  }
}
