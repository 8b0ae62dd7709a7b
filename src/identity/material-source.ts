/**
 * Where the gateway's own TLS material comes from. Two sources implement it: files on disk
 * (`tls-material.ts` TlsMaterialWatcher: cert-manager, istio-csr, SPIRE helpers) and the mesh CA
 * (`istio-ca/source.ts`: a CSR to istiod's IstioCertificateService). The runtime
 * (`src/gateway/runtime.ts`) only sees this interface: it serves `current`, and on `'update'`
 * swaps the server's secure context; the HBONE client reads `current` for every new connection.
 * Live connections keep the material they were made with (docs/operating.md, certificate rotation).
 */
import type { EventEmitter } from 'node:events';
import type { WaygateError } from '../errors.ts';
import type { TlsMaterial } from './tls-material.ts';

/**
 * Events: `'update'` (material: TlsMaterial) when new, validated material is in force; `'error'`
 * (err: WaygateError) when a renewal or reload failed, the previous material staying in force.
 * `'error'` is emitted only when someone listens, so a forgotten listener cannot crash the process.
 */
export interface TlsMaterialSource extends EventEmitter {
  /** The material in force: always valid, never undefined once the source is constructed/started. */
  readonly current: TlsMaterial;
  /** The most recent failure, cleared by the next success. */
  readonly lastError: WaygateError | undefined;
  /** Stops watching, polling or renewing; timers and sockets it owns are released. Idempotent. */
  close(): void;
}
