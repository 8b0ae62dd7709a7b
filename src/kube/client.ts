/**
 * Credentials for the Kubernetes API, shared by the discovery provider
 * (src/discovery/kubernetes/), the Gateway status writer (src/kube/gateway-status.ts) and
 * `waygate doctor`. One rule for every caller, as kubectl and client-go resolve them:
 *
 * 1. an explicit kubeconfig path (`--kubeconfig`, or `discovery.kubernetes.kubeconfig`);
 * 2. else `KUBECONFIG` (colon-separated list, merged, as kubectl does);
 * 3. else, inside a pod (`KUBERNETES_SERVICE_HOST` set and the service account token mounted),
 *    in-cluster credentials: the projected token, re-read as the kubelet rotates it;
 * 4. else `~/.kube/config`.
 *
 * @kubernetes/client-node is loaded lazily: it costs ~0.5 s of startup, and a gateway without
 * Kubernetes must not pay it (the serve path imports this module only when configured).
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { WaygateError } from '../errors.ts';

/** Where the kubelet mounts a pod's service account (token, ca.crt, namespace). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigOptions {
  /** An explicit kubeconfig file; wins over everything else. */
  kubeconfig?: string | null | undefined;
  /** The environment to read (tests pass their own). Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * A directory prefixed to {@link SERVICE_ACCOUNT_DIR} (tests lay out a fake mount under a temp
   * dir). In-cluster credentials also read `KUBERNETES_SERVICE_HOST`/`_PORT` from `process.env`,
   * as client-node does.
   */
  serviceAccountPrefix?: string;
}

/** How the credentials were found, for the startup log line and `waygate doctor`. */
export interface LoadedKubeConfig {
  readonly config: KubeConfig;
  /** `kubeconfig /path`, `KUBECONFIG a:b`, `in-cluster`, `kubeconfig ~/.kube/config`. */
  readonly from: string;
  /** The API server's URL. */
  readonly server: string;
}

type ClientModule = typeof import('@kubernetes/client-node');
let client: Promise<ClientModule> | null = null;

/** The client library, imported once on first use. */
export function kubeClient(): Promise<ClientModule> {
  client ??= import('@kubernetes/client-node');
  return client;
}

/**
 * Loads credentials by the rule above. Throws `WG_KUBE` naming the file or the missing piece when
 * none can be found or the file is not a usable kubeconfig.
 */
export async function loadKubeConfig(opts: KubeConfigOptions = {}): Promise<LoadedKubeConfig> {
  const k8s = await kubeClient();
  const env = opts.env ?? process.env;
  const kc = new k8s.KubeConfig();
  let from: string;
  try {
    if (opts.kubeconfig) {
      const file = path.resolve(opts.kubeconfig);
      if (!existsSync(file)) throw new WaygateError('WG_KUBE', `kubeconfig ${file} does not exist`);
      kc.loadFromFile(file);
      from = `kubeconfig ${file}`;
    } else if (env['KUBECONFIG']) {
      // kubectl's rule: every listed file that exists is merged, the first to set a value wins.
      const files = env['KUBECONFIG'].split(path.delimiter).filter((f) => f !== '' && existsSync(f));
      if (files.length === 0) throw new WaygateError('WG_KUBE', `KUBECONFIG (${env['KUBECONFIG']}) names no file that exists`);
      kc.loadFromFile(files[0]!);
      for (const file of files.slice(1)) {
        const more = new k8s.KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more, true);
      }
      from = `KUBECONFIG ${files.join(path.delimiter)}`;
    } else if (env['KUBERNETES_SERVICE_HOST'] && existsSync(path.join(opts.serviceAccountPrefix ?? '', SERVICE_ACCOUNT_DIR, 'token'))) {
      // The token file is re-read by client-node's tokenFile provider, so the kubelet's rotation of
      // the projected token is picked up without a restart.
      kc.loadFromCluster(opts.serviceAccountPrefix ?? '');
      from = 'in-cluster';
    } else {
      const file = path.join(env['HOME'] ?? os.homedir(), '.kube', 'config');
      if (!existsSync(file)) {
        throw new WaygateError(
          'WG_KUBE',
          'no Kubernetes credentials: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account token mounted',
        );
      }
      kc.loadFromFile(file);
      from = `kubeconfig ${file}`;
    }
  } catch (err) {
    if (err instanceof WaygateError) throw err;
    throw new WaygateError('WG_KUBE', `cannot load Kubernetes credentials: ${(err as Error).message}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new WaygateError('WG_KUBE', `${from}: no current context or its cluster is missing (kubectl config current-context)`);
  return { config: kc, from, server: cluster.server };
}

/**
 * The HTTP status of a failed API call: client-node's ApiException carries it as `code` (typed
 * list, get, replace), its Watch as `statusCode`; undefined for a transport error (its `code` is a
 * string such as ECONNREFUSED).
 */
export function apiStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** The API server's own words for a failed call: the `message` of the Status it answered, if any. */
export function apiStatusMessage(err: unknown): string | undefined {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const message = (parsed as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' && message !== '' ? message : undefined;
}
