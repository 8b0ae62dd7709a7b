/**
 * The gateway's TLS material source as the config chooses it (docs/kubernetes.md, "Certificates
 * from the mesh CA"): files (`tls.certFile`/`keyFile`, watched) or istiod's CA (`tls.istioCa`).
 * Both give the runtime the same TlsMaterialSource, so the listener and the HBONE client rotate
 * alike whichever issued the certificate.
 */
import type { GatewayConfig, IstioCaConfig } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import { startIstioCaSource } from '../identity/istio-ca/source.ts';
import type { TlsMaterialSource } from '../identity/material-source.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { TlsMaterialWatcher } from '../identity/tls-material.ts';
import type { OpsLogger } from '../telemetry/log.ts';

/**
 * The SPIFFE ID to ask istiod for: `tls.istioCa.identity`, else the pod's own as istio-agent
 * builds it, `spiffe://<trust domain>/ns/<POD_NAMESPACE>/sa/<SERVICE_ACCOUNT>` (the Deployment
 * sets both from the downward API). The trust domain is the first of `trustDomains`, the mesh's
 * own. WG_CONFIG naming what to set when neither is there.
 */
export function istioCaIdentity(ca: Readonly<IstioCaConfig>, trustDomains: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  if (ca.identity !== null) return ca.identity;
  const ns = env['POD_NAMESPACE']?.trim() ?? '';
  const sa = env['SERVICE_ACCOUNT']?.trim() ?? '';
  const td = trustDomains[0];
  if (ns === '' || sa === '' || td === undefined) {
    const missing = [ns === '' ? 'POD_NAMESPACE' : null, sa === '' ? 'SERVICE_ACCOUNT' : null, td === undefined ? 'trustDomains' : null].filter(Boolean);
    throw new WaygateError(
      'WG_CONFIG',
      `tls.istioCa: cannot tell which identity to ask istiod for: ${missing.join(' and ')} not set. Set tls.istioCa.identity, or the environment from the downward API (metadata.namespace, spec.serviceAccountName) as examples/kubernetes/deployment.yaml does`,
    );
  }
  const id = `spiffe://${td}/ns/${ns}/sa/${sa}`;
  if (parseSpiffeId(id) === null) throw new WaygateError('WG_CONFIG', `tls.istioCa: "${id}" (from POD_NAMESPACE and SERVICE_ACCOUNT) is not a SPIFFE ID`);
  return id;
}

/** Opens the configured source; rejects (WG_CERT, WG_CA, WG_CONFIG) when no valid material can be had. */
export async function openTlsSource(config: Readonly<GatewayConfig>, log: OpsLogger, env: NodeJS.ProcessEnv = process.env): Promise<TlsMaterialSource> {
  const ca = config.tls.istioCa;
  if (ca === null) {
    return new TlsMaterialWatcher({ certFile: config.tls.certFile, keyFile: config.tls.keyFile, trustBundleFiles: config.tls.trustBundleFiles });
  }
  const identity = istioCaIdentity(ca, config.trustDomains, env);
  log.info({ address: ca.address, identity, clusterId: ca.clusterId, keyAlgorithm: ca.keyAlgorithm }, 'asking the mesh CA for the gateway certificate');
  return startIstioCaSource({
    address: ca.address,
    ...(ca.serverName !== null ? { serverName: ca.serverName } : {}),
    rootCertFiles: config.tls.trustBundleFiles,
    tokenFile: ca.tokenFile,
    clusterId: ca.clusterId,
    identity,
    requestedTtlMs: ca.requestedTtlMs,
    requestTimeoutMs: ca.requestTimeoutMs,
    keyAlgorithm: ca.keyAlgorithm,
    log,
  });
}
