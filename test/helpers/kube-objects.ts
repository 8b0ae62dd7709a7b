/**
 * Kubernetes objects for the discovery watch/provider tests, in the shape an API server stores
 * them (kubectl's view: test/fixtures/kube/shop.json has the full form; these keep the fields the
 * mapping reads, src/discovery/kubernetes/map.ts): a Service, its EndpointSlice, its Pods.
 */
import type { KubeObject } from './fake-kube-api.ts';

export function service(name: string, opts: { ns?: string; vip?: string; port?: number; targetPort?: number | string; labels?: Record<string, string> } = {}): KubeObject {
  const ns = opts.ns ?? 'shop';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns, labels: opts.labels ?? { app: name } },
    spec: {
      type: 'ClusterIP',
      clusterIP: opts.vip ?? '10.96.0.10',
      clusterIPs: [opts.vip ?? '10.96.0.10'],
      selector: { app: name },
      ports: [{ name: 'http', port: opts.port ?? 80, protocol: 'TCP', targetPort: opts.targetPort ?? 8080 }],
    },
  };
}

export interface PodOpts {
  ns?: string;
  ip: string;
  sa?: string;
  ready?: boolean;
  /** Ambient (istio-cni redirection annotation) by default; false: plain TCP. */
  ambient?: boolean;
  app?: string;
  containerPort?: number;
}

export function pod(name: string, o: PodOpts): KubeObject {
  const ns = o.ns ?? 'shop';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: ns,
      labels: { app: o.app ?? 'echo' },
      ...(o.ambient === false ? {} : { annotations: { 'ambient.istio.io/redirection': 'enabled' } }),
    },
    spec: {
      serviceAccountName: o.sa ?? 'echo',
      containers: [{ name: 'app', image: 'echo:1', ports: [{ name: 'http', containerPort: o.containerPort ?? 8080, protocol: 'TCP' }] }],
    },
    status: {
      phase: 'Running',
      podIP: o.ip,
      podIPs: [{ ip: o.ip }],
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  };
}

export interface EndpointOpts {
  pod: string;
  ip: string;
  ready?: boolean;
}

/** The EndpointSlice of `svc` listing `endpoints` (port `http` -> `port`). */
export function slice(svc: string, endpoints: readonly EndpointOpts[], opts: { ns?: string; port?: number; name?: string } = {}): KubeObject {
  const ns = opts.ns ?? 'shop';
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: opts.name ?? `${svc}-abcde`, namespace: ns, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: opts.port ?? 8080, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
      targetRef: { kind: 'Pod', name: e.pod, namespace: ns },
    })),
  };
}
