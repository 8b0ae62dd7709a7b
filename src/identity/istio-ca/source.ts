/**
 * The gateway's certificate from istiod's CA, kept current: a TlsMaterialSource (material-source.ts)
 * that asks for a certificate at start, renews it at half its lifetime as istio-agent and ztunnel
 * do (Istio's SECRET_GRACE_PERIOD_RATIO 0.5, with ±1% jitter so that replicas started together do
 * not renew together), and retries a failed renewal with exponential backoff while the material in
 * force keeps serving. Every answer is verified (verify.ts) before it is used.
 *
 * It also watches the mesh root files: istiod's root can rotate long before the next renewal (half
 * of a lifetime of up to 90 days), and the listener must trust the new root as soon as peers
 * present certificates under it. See {@link IstioCaSource} for what a root change does.
 *
 * One request at a time, one renewal timer at a time; close() cancels both and stops the watch.
 *
 * The gRPC client (client.ts, with @grpc/grpc-js, @grpc/proto-loader and protobufjs: some 120
 * files) is imported by the first request, not with this module: every gateway process loads this
 * module (src/gateway/runtime.ts), and only one configured with `tls.istioCa` ever calls istiod.
 * test/identity/istio-ca.test.ts ("loaded lazily") fails if the import becomes eager again.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { WaygateError } from '../../errors.ts';
import type { TlsMaterialSource } from '../material-source.ts';
import { parseSpiffeId } from '../spiffe.ts';
import { tlsMaterialFromPem, type TlsMaterial } from '../tls-material.ts';
import { chainsToAnchor, loadTrustBundle, parsePemCertificates, type TrustBundle } from '../trust-bundle.ts';
import { caServerName } from './address.ts';
import { ISTIO_CA_DEFAULTS, ISTIO_CA_KEY_ALGORITHMS, type IstioCaKeyAlgorithm } from '../../config/schema.ts';
import { createCsr } from './csr.ts';
import { verifyIssuedChain } from './verify.ts';
import { DEFAULT_DEBOUNCE_MS, DEFAULT_POLL_INTERVAL_MS, watchFileDirectories, type FileDirWatch, type FileDirWatchError } from '../../util/file-dir-watch.ts';
import { timerAt, type LongTimer } from '../../util/long-timer.ts';

/** Options of {@link startIstioCaSource}. */
export interface IstioCaSourceOptions {
  /** istiod's CA endpoint, `host:port`, e.g. `istiod.istio-system.svc:15012`. */
  address: string;
  /** The name istiod's serving certificate is verified for; default the host of `address`. */
  serverName?: string;
  /** The mesh root PEM file(s) (`istio-ca-root-cert`): they verify istiod and the issued chain, and become the trust bundle. */
  rootCertFiles: readonly string[];
  /** The projected service-account token (audience `istio-ca`), re-read for every request. */
  tokenFile: string;
  /** Sent as the `ClusterID` metadata entry (istio-agent's CLUSTER_ID). */
  clusterId: string;
  /** The SPIFFE ID to ask for, `spiffe://<td>/ns/<ns>/sa/<sa>`; istiod issues the token's, so they must agree. */
  identity: string;
  /** Requested lifetime, sent as validity_duration in seconds; default 86,400,000 (istio's 24 h). istiod may shorten it. */
  requestedTtlMs?: number;
  /** Deadline of each request; default 10,000. */
  requestTimeoutMs?: number;
  /** The key to generate for each request: RSA 2048 (default, istio-agent's) or ECDSA P-256 (istio-agent's ECC_SIGNATURE_ALGORITHM=ECDSA). */
  keyAlgorithm?: IstioCaKeyAlgorithm;
  /** First retry delay after a failed renewal, doubled per failure; default 1,000. */
  initialBackoffMs?: number;
  /** Cap of the retry delay; default 30,000. */
  maxBackoffMs?: number;
  /** Quiet period after the last event in a root file's directory before re-reading the roots; default 200 (a ConfigMap update is several renames). */
  rootWatchDebounceMs?: number;
  /** Re-read the root files this often even without events (mounts that deliver none); default 60,000, 0 disables. */
  rootPollIntervalMs?: number;
  log?: Logger;
}

/** What an operator needs to see (debug endpoints, metrics). */
export interface IstioCaStatus {
  identity: string;
  address: string;
  keyAlgorithm: IstioCaKeyAlgorithm;
  /** The certificate in force. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  /** When the certificate in force was issued (received and verified). */
  issuedAt: Date;
  /** When the next request is due (a renewal, or a retry after a failure); undefined while one runs or after close(). */
  nextAttemptAt: Date | undefined;
  /** The most recent failure, cleared by the next success. */
  lastError: WaygateError | undefined;
  lastErrorAt: Date | undefined;
  /** Failed requests since the last success. */
  consecutiveFailures: number;
  /** Certificates issued and put in force since start (the first one included). */
  issuedCount: number;
  /** Failed renewal requests since start (counters for metrics). */
  failureCount: number;
  closed: boolean;
}

/** Istio's SECRET_GRACE_PERIOD_RATIO: renew once half the lifetime has passed. */
export const RENEW_AT_LIFETIME_FRACTION = 0.5;
/** Jitter on that fraction (Istio's SECRET_GRACE_PERIOD_RATIO_JITTER). */
export const RENEW_JITTER_FRACTION = 0.01;

const DEFAULTS = {
  requestedTtlMs: ISTIO_CA_DEFAULTS.requestedTtlMs,
  requestTimeoutMs: ISTIO_CA_DEFAULTS.requestTimeoutMs,
  keyAlgorithm: ISTIO_CA_DEFAULTS.keyAlgorithm,
  initialBackoffMs: 1_000,
  maxBackoffMs: 30_000,
  rootWatchDebounceMs: DEFAULT_DEBOUNCE_MS,
  rootPollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
} as const;

type Settings = Required<Omit<IstioCaSourceOptions, 'serverName' | 'log'>> & Pick<IstioCaSourceOptions, 'serverName' | 'log'>;

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new WaygateError('WG_CA', `${name} must be a positive number of milliseconds, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new WaygateError('WG_CA', `${name} must be zero or a positive number of milliseconds, got ${value}`);
  return value;
}

function keyAlgorithmOf(value: string): IstioCaKeyAlgorithm {
  if (!(ISTIO_CA_KEY_ALGORITHMS as readonly string[]).includes(value)) throw new WaygateError('WG_CA', `keyAlgorithm must be ${ISTIO_CA_KEY_ALGORITHMS.join(' or ')}, got ${JSON.stringify(value)}`);
  return value as IstioCaKeyAlgorithm;
}

function settingsOf(opts: IstioCaSourceOptions): Settings {
  if (parseSpiffeId(opts.identity) === null) throw new WaygateError('WG_CA', `"${opts.identity}" is not a SPIFFE ID to ask istiod for`);
  if (opts.rootCertFiles.length === 0) throw new WaygateError('WG_CA', 'no mesh root file given to verify istiod and its certificates with');
  caServerName(opts.address, opts.serverName); // the address must parse
  const s: Settings = {
    address: opts.address,
    rootCertFiles: [...opts.rootCertFiles],
    tokenFile: opts.tokenFile,
    clusterId: opts.clusterId,
    identity: opts.identity,
    requestedTtlMs: positive('requestedTtlMs', opts.requestedTtlMs ?? DEFAULTS.requestedTtlMs),
    requestTimeoutMs: positive('requestTimeoutMs', opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs),
    keyAlgorithm: keyAlgorithmOf(opts.keyAlgorithm ?? DEFAULTS.keyAlgorithm),
    initialBackoffMs: positive('initialBackoffMs', opts.initialBackoffMs ?? DEFAULTS.initialBackoffMs),
    maxBackoffMs: positive('maxBackoffMs', opts.maxBackoffMs ?? DEFAULTS.maxBackoffMs),
    rootWatchDebounceMs: nonNegative('rootWatchDebounceMs', opts.rootWatchDebounceMs ?? DEFAULTS.rootWatchDebounceMs),
    rootPollIntervalMs: nonNegative('rootPollIntervalMs', opts.rootPollIntervalMs ?? DEFAULTS.rootPollIntervalMs),
  };
  if (opts.serverName !== undefined) s.serverName = opts.serverName;
  if (opts.log !== undefined) s.log = opts.log;
  return s;
}

/** One request: key, CSR, call, verification. Rejects with WG_CA. */
async function issue(s: Settings, signal: AbortSignal): Promise<TlsMaterial> {
  // Read for every request: a mesh root rotation rewrites the files while the gateway runs.
  let roots;
  try {
    roots = loadTrustBundle(s.rootCertFiles);
  } catch (err) {
    throw rootError('the mesh root to verify istiod and its certificates with', err);
  }
  const csr = await createCsr(s.identity, s.keyAlgorithm);
  signal.throwIfAborted();
  // Dynamic: see the module comment. Node caches the module, so renewals import nothing again.
  const { createCertificate } = await import('./client.ts');
  signal.throwIfAborted();
  const certChain = await createCertificate(
    {
      address: s.address,
      ...(s.serverName !== undefined ? { serverName: s.serverName } : {}),
      roots,
      tokenFile: s.tokenFile,
      clusterId: s.clusterId,
      requestTimeoutMs: s.requestTimeoutMs,
    },
    { csr: csr.csrPem, validity_duration: Math.max(1, Math.round(s.requestedTtlMs / 1000)) },
    signal,
  );
  return verifyIssuedChain(certChain, {
    identity: s.identity,
    keyPem: csr.keyPem,
    anchors: roots.certificates,
    rootCertFiles: s.rootCertFiles,
    tokenFile: s.tokenFile,
    address: s.address,
    nowMs: Date.now(),
  });
}

function rootError(what: string, err: unknown): WaygateError {
  return new WaygateError('WG_CA', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

function asCaError(err: unknown): WaygateError {
  if (err instanceof WaygateError) return err.code === 'WG_CA' ? err : new WaygateError('WG_CA', err.message, { cause: err });
  return new WaygateError('WG_CA', `certificate request failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/**
 * The certificate from istiod, renewed before it expires. Create it with {@link startIstioCaSource}.
 *
 * Events (material-source.ts): `'update'` (material: TlsMaterial) after a renewal put new, verified
 * material in force; `'error'` (err: WaygateError, code WG_CA) after a failed renewal, the current
 * material staying in force and a retry scheduled; emitted only when someone listens. A listener
 * that throws is logged, never allowed to break the renewal schedule.
 *
 * A change of the mesh root files (seen by a watch of their directories, which also sees the
 * kubelet's `..data` symlink swap of a ConfigMap volume, and by a slow poll): when the certificate
 * in force still chains to the new roots, the same certificate and key are put in force with the
 * new roots as trust anchors (`'update'`, no request to istiod); when it no longer does, it is
 * renewed at once. Roots that cannot be read or parsed change nothing and are reported (`'error'`).
 */
export class IstioCaSource extends EventEmitter implements TlsMaterialSource {
  readonly #s: Settings;
  #current: TlsMaterial;
  #issuedAt: Date;
  #issuedCount = 1;
  #timer: LongTimer | undefined;
  #nextAttemptAt: Date | undefined;
  #inFlight: AbortController | undefined;
  #failures = 0;
  #failureCount = 0;
  #lastErrorAt: Date | undefined;
  #closed = false;
  #rootWatch: FileDirWatch | undefined;
  /** The roots (anchors PEM) last acted upon, so that a poll or event repeats nothing. */
  #rootsSeen: string;
  /** A root check was due while a request ran: done once it ends. */
  #rootsDue = false;
  /** The root read failure last reported, so that each poll does not report it again. */
  #rootFailure: WaygateError | undefined;
  lastError: WaygateError | undefined;

  /** @internal Use {@link startIstioCaSource}. */
  constructor(settings: Settings, first: TlsMaterial) {
    super();
    this.#s = settings;
    this.#current = first;
    this.#issuedAt = first.loadedAt;
    this.#rootsSeen = first.ca;
    this.#scheduleRenewal();
    this.#watchRoots();
  }

  get current(): TlsMaterial {
    return this.#current;
  }

  status(): IstioCaStatus {
    return {
      identity: this.#s.identity,
      address: this.#s.address,
      keyAlgorithm: this.#s.keyAlgorithm,
      fingerprint: this.#current.fingerprint,
      notBefore: new Date(this.#current.leaf.validFrom),
      notAfter: this.#current.notAfter,
      issuedAt: this.#issuedAt,
      nextAttemptAt: this.#nextAttemptAt,
      lastError: this.lastError,
      lastErrorAt: this.#lastErrorAt,
      consecutiveFailures: this.#failures,
      issuedCount: this.#issuedCount,
      failureCount: this.#failureCount,
      closed: this.#closed,
    };
  }

  /** The renewal time of the material in force: notBefore + lifetime × (0.5 ± 0.01). */
  #renewalTime(): number {
    const notBefore = new Date(this.#current.leaf.validFrom).getTime();
    const lifetime = this.#current.notAfter.getTime() - notBefore;
    const fraction = RENEW_AT_LIFETIME_FRACTION + (Math.random() * 2 - 1) * RENEW_JITTER_FRACTION;
    return notBefore + lifetime * fraction;
  }

  #scheduleRenewal(): void {
    // Never sooner than the first backoff step: a certificate already past its half-life (a CA
    // backdating notBefore, a clock step) must not turn into back-to-back requests.
    this.#schedule(Math.max(this.#renewalTime() - Date.now(), this.#s.initialBackoffMs));
  }

  #scheduleRetry(): void {
    const exp = this.#s.initialBackoffMs * 2 ** Math.min(this.#failures - 1, 30);
    // ±10% so that replicas failing together do not retry together.
    this.#schedule(Math.min(exp, this.#s.maxBackoffMs) * (0.9 + Math.random() * 0.2));
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    const atMs = Date.now() + delayMs;
    this.#nextAttemptAt = new Date(atMs);
    // timerAt: half of a certificate lifetime above 49.7 days (istiod allows up to 90) is beyond
    // one Node timer, which would fire at once and turn renewal into a loop. Unref'd: the
    // listeners keep the process alive; a source nobody closed must not.
    this.#timer = timerAt(atMs, () => {
      this.#timer = undefined;
      this.#nextAttemptAt = undefined;
      this.#startRenewal();
    });
  }

  #startRenewal(): void {
    // #renew() catches what it awaits and #emit() what listeners throw; anything else is a bug
    // to log, not an unhandled rejection that ends the process.
    this.#renew().catch((err: unknown) => this.#s.log?.error({ err: (err as Error)?.message ?? String(err) }, 'renewing the gateway certificate failed unexpectedly'));
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    const abort = new AbortController();
    this.#inFlight = abort;
    let next: TlsMaterial;
    try {
      next = await issue(this.#s, abort.signal);
    } catch (err) {
      this.#inFlight = undefined;
      if (this.#closed) return;
      this.#fail(asCaError(err));
      this.#rootsAfterRequest();
      return;
    }
    this.#inFlight = undefined;
    if (this.#closed) return;
    this.#current = next;
    this.#rootsSeen = next.ca;
    this.#rootFailure = undefined;
    this.#issuedAt = next.loadedAt;
    this.#issuedCount += 1;
    this.#failures = 0;
    this.lastError = undefined;
    this.#scheduleRenewal();
    this.#s.log?.info(
      { identity: this.#s.identity, fingerprint: next.fingerprint, notAfter: next.notAfter.toISOString(), nextRenewalAt: this.#nextAttemptAt?.toISOString() },
      'renewed the gateway certificate from istiod',
    );
    this.#emit('update', next);
    this.#rootsAfterRequest();
  }

  #fail(err: WaygateError): void {
    this.#failures += 1;
    this.#failureCount += 1;
    this.lastError = err;
    this.#lastErrorAt = new Date();
    this.#scheduleRetry();
    const expired = this.#current.notAfter.getTime() <= Date.now();
    const fields = {
      err: err.message,
      consecutiveFailures: this.#failures,
      notAfter: this.#current.notAfter.toISOString(),
      nextAttemptAt: this.#nextAttemptAt?.toISOString(),
    };
    if (expired) this.#s.log?.error(fields, 'renewing the gateway certificate failed and the one in force has expired: peers refuse new connections until a renewal succeeds');
    else this.#s.log?.warn(fields, 'renewing the gateway certificate failed; the current one stays in force');
    this.#emitError(err);
  }

  #emitError(err: WaygateError): void {
    if (this.listenerCount('error') > 0) this.#emit('error', err);
  }

  /** Emits to the listeners; one that throws is logged (its bug), and the source carries on. */
  #emit(event: 'update' | 'error', arg: TlsMaterial | WaygateError): void {
    try {
      this.emit(event, arg);
    } catch (err) {
      this.#s.log?.error(
        { event, err: (err as Error)?.message ?? String(err), stack: (err as Error)?.stack },
        `a '${event}' listener of the istiod certificate source threw; the source carries on`,
      );
    }
  }

  #watchRoots(): void {
    try {
      // The directories, not the files: a ConfigMap volume's `..data` swap (src/util/file-dir-watch.ts).
      this.#rootWatch = watchFileDirectories(this.#s.rootCertFiles, {
        debounceMs: this.#s.rootWatchDebounceMs,
        pollIntervalMs: this.#s.rootPollIntervalMs,
        onCheck: () => this.#checkRoots(),
        onWatchError: (dir, err) => this.#rootFail(new WaygateError('WG_CA', `${dir}: watching the mesh root for changes failed: ${err.message}`, { cause: err })),
      });
    } catch (err) {
      this.close();
      const e = err as FileDirWatchError;
      throw new WaygateError('WG_CA', `${e.dir}: cannot watch the mesh root for changes: ${e.message}`, { cause: err });
    }
  }

  #rootsAfterRequest(): void {
    if (!this.#rootsDue) return;
    this.#rootsDue = false;
    this.#checkRoots();
  }

  /** Re-reads the mesh root files and acts on a change (see the class comment). */
  #checkRoots(): void {
    if (this.#closed) return;
    if (this.#inFlight) {
      // The request read the roots when it started; look again once it is over.
      this.#rootsDue = true;
      return;
    }
    let roots: TrustBundle;
    try {
      roots = loadTrustBundle(this.#s.rootCertFiles);
    } catch (err) {
      this.#rootFail(rootError('the mesh root changed but cannot be used; the certificate and trust anchors in force stay', err));
      return;
    }
    if (this.#rootFailure) {
      if (this.lastError === this.#rootFailure) this.lastError = undefined;
      this.#rootFailure = undefined;
    }
    if (roots.pem === this.#rootsSeen) return; // no change, or one already acted upon
    this.#rootsSeen = roots.pem;
    if (roots.pem === this.#current.ca) return;
    const chain = parsePemCertificates(this.#current.cert, 'the certificate in force');
    if (!chainsToAnchor(chain, roots.certificates)) {
      this.#s.log?.warn(
        { rootCertFiles: this.#s.rootCertFiles, fingerprint: this.#current.fingerprint },
        'the mesh root changed and the certificate in force does not chain to it: renewing now',
      );
      this.#timer?.clear();
      this.#timer = undefined;
      this.#nextAttemptAt = undefined;
      this.#startRenewal();
      return;
    }
    let next: TlsMaterial;
    try {
      next = tlsMaterialFromPem({ cert: this.#current.cert, key: this.#current.key, ca: roots.pem, origin: `istiod at ${this.#s.address}` });
    } catch (err) {
      this.#rootFail(rootError('the mesh root changed but cannot be used; the certificate and trust anchors in force stay', err));
      return;
    }
    this.#current = next;
    this.#s.log?.info(
      { rootCertFiles: this.#s.rootCertFiles, anchors: roots.certificates.length, fingerprint: next.fingerprint },
      'the mesh root changed; the certificate in force chains to it and is now served with the new trust anchors',
    );
    this.#emit('update', next);
  }

  /** A root failure: reported once per distinct message (a poll repeats it), nothing else changes. */
  #rootFail(err: WaygateError): void {
    if (this.#closed || this.#rootFailure?.message === err.message) return;
    this.#rootFailure = err;
    this.lastError = err;
    this.#lastErrorAt = new Date();
    this.#s.log?.warn({ err: err.message }, 'reading the changed mesh root failed; the certificate and trust anchors in force stay');
    this.#emitError(err);
  }

  /** Stops renewing: the timers are cleared, the root watch stopped and a request in flight cancelled. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#timer?.clear();
    this.#timer = undefined;
    this.#rootWatch?.close();
    this.#rootWatch = undefined;
    this.#nextAttemptAt = undefined;
    this.#inFlight?.abort();
    this.#inFlight = undefined;
  }
}

/**
 * Asks istiod for the first certificate and resolves once it is issued and verified; rejects with
 * WG_CA saying why otherwise (unreachable address, refused token, wrong identity, untrusted chain,
 * invalid dates). There is no retry at start: a gateway without a certificate cannot serve, and
 * the failure belongs in front of whoever starts it (the kubelet restarts the pod with backoff).
 */
export async function startIstioCaSource(opts: IstioCaSourceOptions): Promise<IstioCaSource> {
  const s = settingsOf(opts);
  let first: TlsMaterial;
  try {
    first = await issue(s, new AbortController().signal);
  } catch (err) {
    throw asCaError(err);
  }
  const source = new IstioCaSource(s, first);
  s.log?.info(
    { identity: s.identity, address: s.address, fingerprint: first.fingerprint, notAfter: first.notAfter.toISOString(), nextRenewalAt: source.status().nextAttemptAt?.toISOString() },
    'gateway certificate issued by istiod',
  );
  return source;
}
