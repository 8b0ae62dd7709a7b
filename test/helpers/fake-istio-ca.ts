/**
 * A stand-in for istiod's CA (port 15012): a real gRPC server (grpc-js, TLS) serving
 * `istio.v1.auth.IstioCertificateService/CreateCertificate` as istiod does:
 *
 * - TLS with a serving certificate for `istiod.istio-system.svc` (DNS SAN), minted by the
 *   project's dev CA under the test mesh (test/helpers/pki.ts: root -> intermediate), or under the
 *   untrusted foreign root with `serving: 'foreign'`;
 * - UNAUTHENTICATED when the `authorization: Bearer <token>` entry is missing or the token is not
 *   in `tokens`; UNAUTHENTICATED as well when `ClusterID` differs from `clusterId` (istiod has no
 *   API server to validate a token of an unknown cluster);
 * - INVALID_ARGUMENT when the CSR does not parse or its signature does not verify (RSA or ECDSA
 *   keys, sha256WithRSAEncryption or ecdsa-with-SHA256: what src/identity/istio-ca/csr.ts sends);
 * - signs the CSR's public key for the identity the TOKEN maps to (never the CSR's SAN), with
 *   the intermediate, valid from now for `validity_duration` seconds (24 h when 0), and answers
 *   `[leaf, intermediate, root]`, leaf first and root last.
 *
 * API (`const ca = await startFakeIstioCa(opts)`):
 * - `ca.address` `127.0.0.1:<port>`; `ca.serverName` (`istiod.istio-system.svc`): pass it as
 *   `serverName`; `ca.rootPem`: the mesh root to write into the root cert file.
 * - `ca.tokens`: Map token -> SPIFFE ID, mutable at any time.
 * - `ca.calls`: CreateCertificate calls received (every one, refused or not); `ca.issued`: certificates returned.
 * - `ca.last`: the last call seen: `{ metadata, csr, validitySeconds, identity?, status }`.
 * - `ca.failNext(n, code, details?)`: the next n calls fail with that gRPC status.
 * - `ca.misbehaveNext(kind, n = 1)`: the next n successful calls return a certificate that is
 *   `'expired'`, `'not-yet-valid'`, `'other-key'` (for a key the caller does not hold),
 *   `'foreign-root'` (signed by a CA outside the mesh root), `'expired-intermediate'` (signed by
 *   a mesh intermediate whose validity ended yesterday), `'non-ca-intermediate'` (a CA:FALSE
 *   certificate in the chain among the CAs) or `'no-client-auth'` (extended key usage serverAuth only).
 * - `ca.lifetimeMs`: when set, the certificates returned live this long from now (short lifetimes
 *   for rotation tests), whatever the request asked for.
 * - `ca.holdNext()`: the next call is left unanswered until the client cancels it (the `'cancelled'`
 *   event fires then).
 * - Events: `'call'` (CallRecord) when a call arrives, `'answer'` (CallRecord) after it is answered
 *   (`status` 0 = OK), `'cancelled'` (CallRecord) when the client cancelled a held call.
 * - `await ca.close()`: stops the server (open calls are cut).
 *
 * `parseCsr(pem)` reads a PKCS#10 CSR as the fake does (node-forge's pki reads RSA keys only).
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Server, ServerCredentials, status as grpcStatus, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import forge from 'node-forge';
import { createCa, issueLeaf, type IssuedCert } from '../../src/identity/dev-ca.ts';
import { istioCertificateService, type IstioCertificateRequest, type IstioCertificateResponse } from '../../src/identity/istio-ca/descriptor.ts';
import { GATEWAY_SPIFFE_ID, testPki } from './pki.ts';

/** The name istiod's serving certificate carries in a default install. */
export const ISTIOD_SERVER_NAME = 'istiod.istio-system.svc';
/** The token the fake accepts by default, for {@link GATEWAY_SPIFFE_ID}. */
export const GATEWAY_TOKEN = 'token-of-waygate-gateway';

export type Misbehaviour = 'expired' | 'not-yet-valid' | 'other-key' | 'foreign-root' | 'expired-intermediate' | 'non-ca-intermediate' | 'no-client-auth';

let expiredIntermediate: IssuedCert | undefined;

/** A mesh intermediate (under the test root) whose validity ended a day ago; minted once. */
function expiredMeshIntermediate(): IssuedCert {
  const DAY_MS = 86_400_000;
  expiredIntermediate ??= createCa({
    parent: testPki().root,
    commonName: 'expired test intermediate',
    pathLen: 0,
    notBefore: new Date(Date.now() - 30 * DAY_MS),
    notAfter: new Date(Date.now() - DAY_MS),
  });
  return expiredIntermediate;
}

/** One CreateCertificate call as the fake saw it. */
export interface CallRecord {
  /** 1-based, in arrival order. */
  n: number;
  /** gRPC metadata, keys lower-case as on the wire (`authorization`, `clusterid`, ...). */
  metadata: Record<string, string>;
  csr: string;
  validitySeconds: number;
  /** The identity signed for (undefined when refused). */
  identity?: string;
  /** The gRPC status answered (0 OK); undefined until answered. */
  status?: number;
  misbehaviour?: Misbehaviour;
}

export interface FakeIstioCaOptions {
  /** Token -> identity; default `{ GATEWAY_TOKEN: GATEWAY_SPIFFE_ID }`. */
  tokens?: Record<string, string>;
  /** The cluster ID it expects in `ClusterID`; default `Kubernetes` (Istio's default CLUSTER_ID). */
  clusterId?: string;
  /** Whose serving certificate: the mesh's (default) or one under the untrusted foreign root. */
  serving?: 'mesh' | 'foreign';
}

export interface FakeIstioCa extends EventEmitter {
  readonly address: string;
  readonly serverName: string;
  /** PEM of the mesh root (the trusted root of test/helpers/pki.ts). */
  readonly rootPem: string;
  readonly tokens: Map<string, string>;
  readonly calls: number;
  readonly issued: number;
  readonly last: CallRecord | undefined;
  lifetimeMs: number | undefined;
  failNext(n: number, code: number, details?: string): void;
  misbehaveNext(kind: Misbehaviour, n?: number): void;
  holdNext(): void;
  close(): Promise<void>;
}

/** A CSR as {@link parseCsr} reads it. */
export interface ParsedCsr {
  publicKey: KeyObject;
  /** The signatureAlgorithm OID: 1.2.840.113549.1.1.11 (sha256WithRSAEncryption) or 1.2.840.10045.4.3.2 (ecdsa-with-SHA256). */
  signatureOid: string;
  /** The extensions of the extensionRequest attribute: OID, critical, and for subjectAltName its GeneralNames (tag, value). */
  extensions: Array<{ id: string; critical: boolean; altNames?: Array<{ type: number; value: string }> }>;
}

/**
 * The signature algorithms a CSR may carry, each with the key type it signs with and the
 * AlgorithmIdentifier parameters it allows, as Go's x509 (istiod) checks them: sha256WithRSAEncryption
 * with NULL parameters, or none (RFC 4055 §5: send NULL, accept both); ecdsa-with-SHA256 with no
 * parameters at all (RFC 5758 §3.2). The hash alone would let an RSA signature labelled ECDSA through.
 */
const SIGNATURE_ALGORITHMS: Record<string, { hash: string; keyType: 'rsa' | 'ec'; nullParams: 'allowed' | 'absent' }> = {
  '1.2.840.113549.1.1.11': { hash: 'sha256', keyType: 'rsa', nullParams: 'allowed' },
  '1.2.840.10045.4.3.2': { hash: 'sha256', keyType: 'ec', nullParams: 'absent' },
};

/**
 * Parses a PKCS#10 CSR (RFC 2986 §4) and verifies its signature over the CertificationRequestInfo
 * with the key it carries; throws saying what is wrong.
 */
export function parseCsr(pem: string): ParsedCsr {
  const body = /-----BEGIN CERTIFICATE REQUEST-----([\s\S]*?)-----END CERTIFICATE REQUEST-----/.exec(pem)?.[1];
  if (body === undefined) throw new Error('no PEM certificate request');
  const { asn1 } = forge;
  type Asn1 = forge.asn1.Asn1;
  // decodeBitStrings false keeps the key and the signature byte-exact (forge takes this options
  // object; @types/node-forge only declares the legacy boolean).
  const fromDer = (bytes: string): Asn1 => (asn1.fromDer as unknown as (b: string, o: { strict: boolean; decodeBitStrings: boolean }) => Asn1)(bytes, { strict: true, decodeBitStrings: false });
  const [info, sigAlg, sig] = fromDer(Buffer.from(body, 'base64').toString('binary')).value as Asn1[];
  const [, , spki, attrs] = (info!.value as Asn1[]);
  const publicKey = createPublicKey({ key: Buffer.from(asn1.toDer(spki!).getBytes(), 'binary'), format: 'der', type: 'spki' });
  const [oid, ...params] = sigAlg!.value as Asn1[];
  const signatureOid = asn1.derToOid(oid!.value as string);
  const algorithm = SIGNATURE_ALGORITHMS[signatureOid];
  if (algorithm === undefined) throw new Error(`signature algorithm ${signatureOid} not supported`);
  if (publicKey.asymmetricKeyType !== algorithm.keyType) throw new Error(`signature algorithm ${signatureOid} does not fit the CSR's ${publicKey.asymmetricKeyType} key`);
  const paramsOk = params.length === 0 || (algorithm.nullParams === 'allowed' && params.length === 1 && params[0]!.type === asn1.Type.NULL);
  if (!paramsOk) throw new Error(`signature algorithm ${signatureOid}: parameters not allowed here`);
  const signature = Buffer.from((sig!.value as string).slice(1), 'binary');
  if (!verify(algorithm.hash, Buffer.from(asn1.toDer(info!).getBytes(), 'binary'), publicKey, signature)) throw new Error('the CSR signature does not verify');
  const extensions: ParsedCsr['extensions'] = [];
  for (const attr of (attrs?.value as Asn1[] | undefined) ?? []) {
    const [type, values] = attr.value as Asn1[];
    if (asn1.derToOid(type!.value as string) !== '1.2.840.113549.1.9.14') continue; // extensionRequest
    for (const ext of ((values!.value as Asn1[])[0]!.value as Asn1[])) {
      const parts = ext.value as Asn1[];
      const id = asn1.derToOid(parts[0]!.value as string);
      const critical = parts.length === 3 && parts[1]!.value === '\xff';
      const value = fromDer(parts.at(-1)!.value as string);
      extensions.push(id === '2.5.29.17'
        ? { id, critical, altNames: (value.value as Asn1[]).map((n) => ({ type: n.type, value: n.value as string })) }
        : { id, critical });
    }
  }
  return { publicKey, signatureOid, extensions };
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** Starts the fake on 127.0.0.1, any free port. */
export async function startFakeIstioCa(opts: FakeIstioCaOptions = {}): Promise<FakeIstioCa> {
  const pki = testPki();
  const clusterId = opts.clusterId ?? 'Kubernetes';
  const serving = issueLeaf({ ca: opts.serving === 'foreign' ? pki.foreignRoot : pki.intermediate, dnsNames: [ISTIOD_SERVER_NAME], commonName: 'istiod' });
  const emitter = new EventEmitter();
  const tokens = new Map(Object.entries(opts.tokens ?? { [GATEWAY_TOKEN]: GATEWAY_SPIFFE_ID }));
  let calls = 0;
  let issued = 0;
  let last: CallRecord | undefined;
  const failures: Array<{ code: number; details: string }> = [];
  const misbehaviours: Misbehaviour[] = [];
  let hold = false;
  let lifetimeMs: number | undefined;

  const answer = (rec: CallRecord, callback: sendUnaryData<IstioCertificateResponse>, code: number, details: string, chain?: string[]): void => {
    rec.status = code;
    if (code === grpcStatus.OK) callback(null, { cert_chain: chain ?? [] });
    else callback({ code, details });
    emitter.emit('answer', rec);
  };

  const handler = (call: ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>, callback: sendUnaryData<IstioCertificateResponse>): void => {
    calls += 1;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(call.metadata.getMap())) metadata[k] = Buffer.isBuffer(v) ? v.toString('base64') : v;
    const rec: CallRecord = { n: calls, metadata, csr: call.request.csr, validitySeconds: Number(call.request.validity_duration) };
    last = rec;
    emitter.emit('call', rec);
    if (hold) {
      hold = false;
      call.on('cancelled', () => emitter.emit('cancelled', rec));
      return;
    }
    const failure = failures.shift();
    if (failure) return answer(rec, callback, failure.code, failure.details);
    const auth = metadata['authorization'];
    const token = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
    if (token === undefined) return answer(rec, callback, grpcStatus.UNAUTHENTICATED, 'no bearer token in the authorization metadata');
    const identity = tokens.get(token);
    if (identity === undefined) return answer(rec, callback, grpcStatus.UNAUTHENTICATED, 'authenticate failure: the token is not valid');
    if (metadata['clusterid'] !== clusterId) {
      return answer(rec, callback, grpcStatus.UNAUTHENTICATED, `authenticate failure: cluster "${metadata['clusterid'] ?? ''}" is unknown`);
    }
    let publicKey;
    try {
      publicKey = parseCsr(rec.csr).publicKey;
    } catch (err) {
      return answer(rec, callback, grpcStatus.INVALID_ARGUMENT, `CSR not valid: ${(err as Error).message}`);
    }
    const now = Date.now();
    const lifetime = lifetimeMs ?? (rec.validitySeconds > 0 ? rec.validitySeconds * 1000 : 86_400_000);
    const kind = misbehaviours.shift();
    let notBefore = new Date(now);
    let notAfter = new Date(now + lifetime);
    if (kind === 'expired') [notBefore, notAfter] = [new Date(now - 2 * 3_600_000), new Date(now - 3_600_000)];
    if (kind === 'not-yet-valid') [notBefore, notAfter] = [new Date(now + 3_600_000), new Date(now + 2 * 3_600_000)];
    const signer: IssuedCert = kind === 'foreign-root' ? pki.foreignRoot : kind === 'expired-intermediate' ? expiredMeshIntermediate() : pki.intermediate;
    const leaf = issueLeaf({
      ca: signer,
      spiffeId: identity,
      notBefore,
      notAfter,
      ...(kind === 'other-key' ? {} : { publicKey }),
      ...(kind === 'no-client-auth' ? { clientAuth: false } : {}),
    });
    const root = signer.caPem ?? signer.certPem;
    const chain = signer.certPem === root ? [leaf.certPem, root] : [leaf.certPem, ...splitPem(signer.chainPem), root];
    // A workload certificate (CA:FALSE) among the CA certificates, as a misassembled cert-chain.pem would put it.
    if (kind === 'non-ca-intermediate') chain.splice(chain.length - 1, 0, pki.serverCert.certPem);
    rec.identity = identity;
    if (kind) rec.misbehaviour = kind;
    issued += 1;
    answer(rec, callback, grpcStatus.OK, '', chain);
  };

  const server = new Server();
  server.addService(istioCertificateService(), { CreateCertificate: handler });
  const creds = ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.chainPem), private_key: Buffer.from(serving.keyPem) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));

  // defineProperties, not Object.assign: the counters are getters read at every access.
  const ca = Object.defineProperties(emitter, Object.getOwnPropertyDescriptors({
    address: `127.0.0.1:${port}`,
    serverName: ISTIOD_SERVER_NAME,
    rootPem: pki.root.certPem,
    tokens,
    get calls() {
      return calls;
    },
    get issued() {
      return issued;
    },
    get last() {
      return last;
    },
    get lifetimeMs() {
      return lifetimeMs;
    },
    set lifetimeMs(v: number | undefined) {
      lifetimeMs = v;
    },
    failNext(n: number, code: number, details = 'injected failure') {
      for (let i = 0; i < n; i++) failures.push({ code, details });
    },
    misbehaveNext(kind: Misbehaviour, n = 1) {
      for (let i = 0; i < n; i++) misbehaviours.push(kind);
    },
    holdNext() {
      hold = true;
    },
    async close() {
      server.forceShutdown();
    },
  }));
  return ca as FakeIstioCa;
}
