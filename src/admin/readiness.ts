/**
 * Readiness (`/healthz/ready` on 15021): ready only once TLS material and a valid policy snapshot
 * are loaded, never while draining (docs/design.md §5 "Shutdown"), and not while the audit log
 * refuses CONNECTs (`audit.onFailure: deny` and the log failing: docs/operating.md, "Audit log
 * guarantees"), nor while the certificate in force has expired; readiness comes back by itself
 * when the log, or new material, does. Kubernetes stops sending new connections
 * to a pod that is not ready, which is the first step of a drain.
 */

export type NotReadyReason = 'tls_material_not_loaded' | 'tls_certificate_expired' | 'policy_snapshot_not_loaded' | 'draining' | 'workers_not_ready' | 'audit_unavailable';

export interface ReadinessState {
  ready: boolean;
  /** Why not ready; empty when ready. */
  reasons: NotReadyReason[];
}

export class Readiness {
  private tls = false;
  private snapshot = false;
  private draining = false;
  private auditUnavailable = false;
  private tlsExpired = false;
  private readonly listeners: ((s: ReadinessState) => void)[] = [];

  setTlsLoaded(v = true): void {
    this.tls = v;
    this.emit();
  }

  setSnapshotLoaded(v = true): void {
    this.snapshot = v;
    this.emit();
  }

  /** The audit log refuses CONNECTs (reversible: the log recovers by itself). */
  setAuditUnavailable(v: boolean): void {
    if (v === this.auditUnavailable) return;
    this.auditUnavailable = v;
    this.emit();
  }

  /**
   * The certificate in force has passed its notAfter and no renewal or reload has replaced it:
   * peers refuse every new handshake, so the pod takes no new connections until one does.
   */
  setTlsExpired(v: boolean): void {
    if (v === this.tlsExpired) return;
    this.tlsExpired = v;
    this.emit();
  }

  /** Irreversible: a draining gateway never becomes ready again. */
  setDraining(): void {
    this.draining = true;
    this.emit();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  state(): ReadinessState {
    const reasons: NotReadyReason[] = [];
    if (this.draining) reasons.push('draining');
    if (!this.tls) reasons.push('tls_material_not_loaded');
    if (this.tlsExpired) reasons.push('tls_certificate_expired');
    if (!this.snapshot) reasons.push('policy_snapshot_not_loaded');
    if (this.auditUnavailable) reasons.push('audit_unavailable');
    return { ready: reasons.length === 0, reasons };
  }

  /** Called after every change (the metrics gauge and, in workers mode, the primary listen here). */
  onChange(listener: (s: ReadinessState) => void): void {
    this.listeners.push(listener);
  }

  private emit(): void {
    const s = this.state();
    for (const l of this.listeners) l(s);
  }
}
