/**
 * One `IstioCertificateService/CreateCertificate` call to istiod, as istio-agent and ztunnel make
 * it: gRPC over TLS to port 15012, istiod's serving certificate verified against the mesh root
 * for the name `istiod.<ns>.svc` (the host of the address unless `serverName` says otherwise),
 * and two metadata entries: `authorization: Bearer <projected service-account token>` and
 * `ClusterID: <cluster>` (istiod picks the cluster whose API server validates the token).
 *
 * Every call reads the token file again (the kubelet rotates projected tokens, typically hourly),
 * takes the mesh root as its caller just read it (a root rotation rewrites the
 * `istio-ca-root-cert` ConfigMap), and opens its own channel, closed when the call ends: a call happens twice a day, so nothing is kept
 * open towards istiod in between, and no stale root or token can outlive a rotation.
 */
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { WaygateError } from '../../errors.ts';
import type { TrustBundle } from '../trust-bundle.ts';
import { caServerName } from './address.ts';
import { istioCertificateService, type IstioCertificateRequest, type IstioCertificateResponse } from './descriptor.ts';

/** Where and how to ask. */
export interface IstioCaCallOptions {
  /** istiod's CA endpoint, `host:port` (`[v6]:port` for an IPv6 literal). */
  address: string;
  /** The name istiod's serving certificate must carry; default the host of `address`. */
  serverName?: string;
  /** The mesh root(s) (loadTrustBundle of the root files): istiod's serving certificate must chain to them. */
  roots: TrustBundle;
  /** The projected service-account token (audience `istio-ca`). */
  tokenFile: string;
  /** Sent as the `ClusterID` metadata entry. */
  clusterId: string;
  /** The call's deadline. */
  requestTimeoutMs: number;
}

/** Reads the bearer token; WG_CA naming the file (a token that is missing or empty is a mount problem). */
export async function readToken(tokenFile: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(tokenFile, 'utf8')).trim();
  } catch (err) {
    throw new WaygateError(
      'WG_CA',
      `${tokenFile}: cannot read the service-account token for istiod: ${(err as Error).message} (mount a projected token of audience istio-ca there)`,
      { cause: err },
    );
  }
  if (token === '') throw new WaygateError('WG_CA', `${tokenFile}: the service-account token for istiod is empty`);
  return token;
}

function describeStatus(err: ServiceError): string {
  const name = status[err.code] ?? String(err.code);
  // grpc-js appends an empty "Resolution note: " to connection failures.
  const details = (err.details ?? '').replace(/\.? ?Resolution note: ?$/, '');
  return details ? `${name}: ${details}` : name;
}

/** A TLS verification failure as OpenSSL and Node word it (untrusted issuer, wrong name). */
const TLS_VERIFY_FAILURE = /certificate|self.signed|altnames|Hostname\/IP/i;

/** The failure of a call, worded for the operator who has to fix it. */
function callError(opts: IstioCaCallOptions, serverName: string, err: ServiceError): WaygateError {
  const at = `istiod at ${opts.address}`;
  const what = describeStatus(err);
  switch (err.code) {
    case status.UNAUTHENTICATED:
      return new WaygateError(
        'WG_CA',
        `${at} refused the token in ${opts.tokenFile} (${what}): it must be a current projected service-account token of audience istio-ca from the cluster istiod knows as "${opts.clusterId}"`,
        { cause: err },
      );
    case status.PERMISSION_DENIED:
      return new WaygateError('WG_CA', `${at} will not sign for the token in ${opts.tokenFile} (${what})`, { cause: err });
    case status.DEADLINE_EXCEEDED:
      return new WaygateError('WG_CA', `${at} did not answer within ${opts.requestTimeoutMs} ms (${what})`, { cause: err });
    case status.UNAVAILABLE:
      if (TLS_VERIFY_FAILURE.test(err.details ?? '')) {
        return new WaygateError(
          'WG_CA',
          `cannot reach ${at} (${what}): its serving certificate must chain to the mesh root in ${opts.roots.files.join(', ')} and name ${serverName} (serverName)`,
          { cause: err },
        );
      }
      return new WaygateError('WG_CA', `cannot reach ${at} (${what}): check the address and that istiod is up`, { cause: err });
    default:
      return new WaygateError('WG_CA', `${at} refused the certificate request (${what})`, { cause: err });
  }
}

/**
 * Sends `request` and resolves with the PEM certificates istiod returned (not yet verified: the
 * caller checks them against its key, identity and the mesh root). Rejects with WG_CA naming the
 * address (and the token file when the token is refused). `signal` cancels the call.
 */
export async function createCertificate(opts: IstioCaCallOptions, request: IstioCertificateRequest, signal?: AbortSignal): Promise<string[]> {
  const serverName = caServerName(opts.address, opts.serverName);
  const token = await readToken(opts.tokenFile);
  signal?.throwIfAborted();
  const method = istioCertificateService()['CreateCertificate']!;
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  // gRPC metadata keys are lower-case on the wire (HTTP/2); istiod reads "ClusterID" case-insensitively.
  metadata.set('ClusterID', opts.clusterId);
  const client = new Client(opts.address, credentials.createSsl(Buffer.from(opts.roots.pem)), {
    'grpc.ssl_target_name_override': serverName,
    'grpc.default_authority': serverName,
  });
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = client.makeUnaryRequest<IstioCertificateRequest, IstioCertificateResponse>(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + opts.requestTimeoutMs },
        (err, response) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(callError(opts, serverName, err));
          else resolve(response?.cert_chain ?? []);
        },
      );
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    client.close();
  }
}
