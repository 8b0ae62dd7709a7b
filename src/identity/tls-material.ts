/**
 * The gateway's own TLS material (certificate chain, private key, trust bundle), loaded and
 * validated as one unit, and reloaded from disk without a restart (docs/design.md §2).
 *
 * Validation happens before anything is swapped in: the key must match the leaf, the chain must
 * lead to an anchor of the trust bundle, and OpenSSL must accept the combination. A reload that
 * fails keeps the previous material in force and reports why.
 */
import { createHash, createPrivateKey, type X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { WaygateError } from '../errors.ts';
import { DEFAULT_DEBOUNCE_MS, DEFAULT_POLL_INTERVAL_MS, watchFileDirectories, type FileDirWatch, type FileDirWatchError } from '../util/file-dir-watch.ts';
import type { TlsMaterialSource } from './material-source.ts';
import { chainsToAnchor, parsePemCertificates, trustBundleFromPem } from './trust-bundle.ts';

/** Which files make up the material. */
export interface TlsMaterialFiles {
  /** PEM: the leaf first, then its intermediates. */
  certFile: string;
  /** PEM private key of the leaf. */
  keyFile: string;
  /** One or more PEM files of trust anchors. */
  trustBundleFiles: readonly string[];
}

/** Validated TLS material, ready for `tls.createSecureContext` / `server.setSecureContext`. */
export interface TlsMaterial {
  /** Certificate chain PEM as read (leaf first). */
  cert: string;
  /** Private key PEM. */
  key: string;
  /** Trust anchors PEM (all bundle files, deduplicated). */
  ca: string;
  /** SHA-256 fingerprint of the leaf, Node's `AB:CD:...` format. */
  fingerprint: string;
  notAfter: Date;
  loadedAt: Date;
  /** The parsed leaf certificate. */
  leaf: X509Certificate;
  /** SHA-256 over the bytes of every file: equal hashes mean nothing changed. */
  contentHash: string;
}

interface RawFiles {
  cert: string;
  key: string;
  bundles: Array<{ file: string; pem: string }>;
  contentHash: string;
}

function hashOf(parts: readonly string[]): string {
  const h = createHash('sha256');
  // Length-prefixed so that moving bytes between files changes the hash.
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:`).update(p);
  return h.digest('hex');
}

function readError(file: string, err: unknown): WaygateError {
  return new WaygateError('WG_CERT', `${file}: cannot read: ${(err as Error).message}`, { cause: err });
}

function readAllSync(files: TlsMaterialFiles): RawFiles {
  const read = (f: string): string => {
    try {
      return readFileSync(f, 'utf8');
    } catch (err) {
      throw readError(f, err);
    }
  };
  const cert = read(files.certFile);
  const key = read(files.keyFile);
  const bundles = files.trustBundleFiles.map((file) => ({ file, pem: read(file) }));
  return { cert, key, bundles, contentHash: hashOf([cert, key, ...bundles.map((b) => b.pem)]) };
}

async function readAll(files: TlsMaterialFiles): Promise<RawFiles> {
  const read = async (f: string): Promise<string> => {
    try {
      return await readFile(f, 'utf8');
    } catch (err) {
      throw readError(f, err);
    }
  };
  const [cert, key, ...pems] = await Promise.all([read(files.certFile), read(files.keyFile), ...files.trustBundleFiles.map(read)]);
  const bundles = files.trustBundleFiles.map((file, i) => ({ file, pem: pems[i]! }));
  return { cert: cert!, key: key!, bundles, contentHash: hashOf([cert!, key!, ...pems]) };
}

function validate(files: TlsMaterialFiles, raw: RawFiles): TlsMaterial {
  if (files.trustBundleFiles.length === 0) throw new WaygateError('WG_CERT', 'no trust bundle file given');
  const chain = parsePemCertificates(raw.cert, files.certFile);
  const leaf = chain[0]!;
  let key;
  try {
    key = createPrivateKey(raw.key);
  } catch (err) {
    throw new WaygateError('WG_CERT', `${files.keyFile}: not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new WaygateError('WG_CERT', `${files.keyFile}: the private key does not match the certificate in ${files.certFile}`);
  }
  const anchors: X509Certificate[] = [];
  const seen = new Set<string>();
  for (const b of raw.bundles) {
    for (const c of trustBundleFromPem(b.pem, b.file).certificates) {
      if (!seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        anchors.push(c);
      }
    }
  }
  if (!chainsToAnchor(chain, anchors)) {
    throw new WaygateError(
      'WG_CERT',
      `${files.certFile}: the certificate does not chain to any CA in ${files.trustBundleFiles.join(', ')} (missing intermediate, or the wrong trust bundle)`,
    );
  }
  const ca = anchors.map((c) => c.toString()).join('');
  try {
    createSecureContext({ cert: raw.cert, key: raw.key, ca });
  } catch (err) {
    throw new WaygateError('WG_CERT', `${files.certFile}: OpenSSL refuses the certificate/key pair: ${(err as Error).message}`, { cause: err });
  }
  return {
    cert: raw.cert,
    key: raw.key,
    ca,
    fingerprint: leaf.fingerprint256,
    notAfter: new Date(leaf.validTo),
    loadedAt: new Date(),
    leaf,
    contentHash: raw.contentHash,
  };
}

/** Loads and validates TLS material; `WG_CERT` naming the file and the reason on any problem. */
export function loadTlsMaterial(files: TlsMaterialFiles): TlsMaterial {
  return validate(files, readAllSync(files));
}

/**
 * Validates TLS material held in memory (a certificate the mesh CA just issued, a key generated in
 * this process) with the same checks as files; `origin` names it in `WG_CERT` messages.
 */
export function tlsMaterialFromPem(pem: { cert: string; key: string; ca: string; origin: string }): TlsMaterial {
  const files = { certFile: `${pem.origin} (certificate chain)`, keyFile: `${pem.origin} (private key)`, trustBundleFiles: [`${pem.origin} (trust bundle)`] };
  const raw = { cert: pem.cert, key: pem.key, bundles: [{ file: files.trustBundleFiles[0]!, pem: pem.ca }], contentHash: hashOf([pem.cert, pem.key, pem.ca]) };
  return validate(files, raw);
}

/** Options of {@link TlsMaterialWatcher}. */
export interface TlsMaterialWatcherOptions extends TlsMaterialFiles {
  /** Quiet period after the last file event before reloading; default 200 ms (a Secret update touches several files). */
  debounceMs?: number;
  /**
   * Re-read the files this often even without events, in case a file system does not deliver
   * them (some network and overlay mounts); default 60,000 ms, 0 disables.
   */
  pollIntervalMs?: number;
  /** Material already loaded (skips the initial load). */
  initial?: TlsMaterial;
}

/**
 * Watches the material's files and reloads them when their content changes.
 *
 * It watches the files' **directories** (src/util/file-dir-watch.ts says why: a Secret volume's
 * `..data` swap); comparing a hash of the contents filters out events that changed nothing.
 *
 * Events: `'update'` (material: TlsMaterial) after a successful reload; `'error'` (err:
 * WaygateError) when changed files fail to load, the previous material staying in force. The
 * `'error'` event is only emitted when someone listens, so a forgotten listener cannot crash the
 * process; the last failure is also kept in {@link lastError}.
 */
export class TlsMaterialWatcher extends EventEmitter implements TlsMaterialSource {
  readonly #files: TlsMaterialFiles;
  readonly #watch: FileDirWatch;
  #current: TlsMaterial;
  #lastAttemptHash: string;
  #checking: Promise<boolean> | undefined;
  #again = false;
  #closed = false;
  /** The most recent reload failure, cleared by a successful reload. */
  lastError: WaygateError | undefined;

  /** Loads the material (throws `WG_CERT` if it is invalid) and starts watching. */
  constructor(opts: TlsMaterialWatcherOptions) {
    super();
    this.#files = { certFile: opts.certFile, keyFile: opts.keyFile, trustBundleFiles: [...opts.trustBundleFiles] };
    this.#current = opts.initial ?? loadTlsMaterial(this.#files);
    this.#lastAttemptHash = this.#current.contentHash;
    try {
      this.#watch = watchFileDirectories([this.#files.certFile, this.#files.keyFile, ...this.#files.trustBundleFiles], {
        debounceMs: opts.debounceMs ?? DEFAULT_DEBOUNCE_MS,
        pollIntervalMs: opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
        onCheck: () => void this.check(),
        onWatchError: (dir, err) => this.#fail(new WaygateError('WG_CERT', `${dir}: watching for certificate changes failed: ${err.message}`, { cause: err })),
      });
    } catch (err) {
      this.#closed = true;
      const e = err as FileDirWatchError;
      throw new WaygateError('WG_CERT', `${e.dir}: cannot watch for certificate changes: ${e.message}`, { cause: err });
    }
  }

  /** The material in force. */
  get current(): TlsMaterial {
    return this.#current;
  }

  /**
   * Re-reads the files now; resolves true when new material was loaded. Concurrent calls share
   * one read, and a call arriving during a read triggers one more read afterwards.
   */
  check(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#checking) {
      this.#again = true;
      return this.#checking;
    }
    this.#checking = this.#doCheck().finally(() => {
      this.#checking = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.check();
      }
    });
    return this.#checking;
  }

  async #doCheck(): Promise<boolean> {
    let raw: RawFiles;
    try {
      raw = await readAll(this.#files);
    } catch (err) {
      // A file missing for a moment (mid-swap) is reported once per distinct failure.
      const e = err instanceof WaygateError ? err : new WaygateError('WG_CERT', String(err));
      if (this.lastError?.message !== e.message) this.#fail(e);
      return false;
    }
    if (this.#closed) return false;
    if (raw.contentHash === this.#current.contentHash) {
      // Back to what is in force (e.g. a file briefly missing mid-swap): nothing to load or report.
      this.#lastAttemptHash = raw.contentHash;
      this.lastError = undefined;
      return false;
    }
    if (raw.contentHash === this.#lastAttemptHash) return false; // the same broken content, already reported
    this.#lastAttemptHash = raw.contentHash;
    let next: TlsMaterial;
    try {
      next = validate(this.#files, raw);
    } catch (err) {
      this.#fail(err instanceof WaygateError ? err : new WaygateError('WG_CERT', String(err), { cause: err }));
      return false;
    }
    this.#current = next;
    this.lastError = undefined;
    this.emit('update', next);
    return true;
  }

  #fail(err: WaygateError): void {
    this.lastError = err;
    if (!this.#closed && this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Stops watching and polling. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#watch.close();
  }
}
