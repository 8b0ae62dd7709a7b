/**
 * One policy load, start to finish (docs/design.md §3, docs/operating.md "Policy reload"):
 *
 *   load + compile off the hot path (async file reads; the data path keeps deciding with the old
 *   snapshot) -> valid and different: store.swap (one reference) -> re-check every live tunnel
 *   against the new snapshot (synchronously, in the same tick as the swap, so no CONNECT can be
 *   decided between them) -> one `reload` audit record + metrics.
 *
 * Files and expressions that did not change since the previous load are reused (load-cache.ts):
 * editing one file of a 10,000-rule set in 100 files reloads in ~0.1 s instead of ~0.4 s.
 *
 * An invalid set is rejected whole: every diagnostic is logged with its position, counted, and
 * recorded; the previous snapshot stays in force. Loads never overlap: a trigger that arrives
 * during a load waits for it and then loads again (the files may have changed since it started).
 */
import { formatDiagnostic, type Diagnostic } from '../errors.ts';
import { AUDIT_SCHEMA_VERSION, type ReloadRecord } from '../audit/record.ts';
import { PolicyLoadCache } from '../policy/load-cache.ts';
import { loadPolicySet } from '../policy/load.ts';
import { DEFAULT_SETTLE_MS } from '../policy/sources.ts';
import type { PolicySnapshot } from '../policy/snapshot.ts';
import type { PolicyStore } from '../policy/store.ts';
import type { OpsLogger } from '../telemetry/log.ts';

export type ReloadTrigger = ReloadRecord['trigger'];

export interface PolicyReloaderOptions {
  paths: readonly string[];
  store: PolicyStore<PolicySnapshot>;
  /** Re-decides live tunnels against the snapshot now in the store; returns how many it closed. */
  recheck: () => number;
  /** Receives every record (audit sink + metrics, or the IPC channel in a worker). */
  onRecord: (record: ReloadRecord) => void;
  log: OpsLogger;
  now?: () => Date;
  /** How old a policy file must be before it is used (sources.ts ReadOptions); default DEFAULT_SETTLE_MS. */
  settleMs?: number;
}

function recordErrors(diags: readonly Diagnostic[]): ReloadRecord['errors'] {
  return diags
    .filter((d) => d.severity === 'error')
    .map((d) => ({ file: d.file, line: d.line, col: d.col, path: d.path, code: d.code, message: d.message }));
}

export class PolicyReloader {
  private readonly opts: PolicyReloaderOptions;
  private running: Promise<ReloadRecord> | null = null;
  /** Unchanged files and expressions are reused from the previous load (load-cache.ts). */
  private readonly cache = new PolicyLoadCache();
  private queued: { trigger: ReloadTrigger; version?: number; promise: Promise<ReloadRecord> } | null = null;

  constructor(opts: PolicyReloaderOptions) {
    this.opts = opts;
  }

  /**
   * Loads the policy paths and applies the result. `version` is given by the primary in workers
   * mode (so every worker stamps the same version); otherwise the store allocates one.
   */
  reload(trigger: ReloadTrigger, version?: number): Promise<ReloadRecord> {
    if (!this.running) {
      this.running = this.run(trigger, version).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // Coalesce: all triggers that arrive during a load share the one load that follows it.
    if (!this.queued) {
      const after = this.running.catch(() => undefined).then(() => {
        const q = this.queued!;
        this.queued = null;
        return this.reload(q.trigger, q.version);
      });
      this.queued = { trigger, promise: after };
      if (version !== undefined) this.queued.version = version;
    } else if (version !== undefined) {
      this.queued.version = version;
    }
    return this.queued.promise;
  }

  private async run(trigger: ReloadTrigger, requestedVersion?: number): Promise<ReloadRecord> {
    const { store, log } = this.opts;
    const version = requestedVersion ?? store.allocateVersion();
    const previous = store.current();
    const prevId = previous ? { version: previous.version, hash: previous.hash } : { version: 0, hash: '' };
    const time = () => (this.opts.now?.() ?? new Date()).toISOString();
    let result;
    try {
      // Files written moments ago are waited for and read again (sources.ts): a writer that does
      // not replace files atomically may not have finished, and half a file can drop a DENY.
      result = await loadPolicySet(this.opts.paths, { version, cache: this.cache, read: { settleMs: this.opts.settleMs ?? DEFAULT_SETTLE_MS } });
    } catch (err) {
      // The loader reports problems as diagnostics; anything thrown is a bug, still fail safe.
      result = {
        ok: false as const,
        diagnostics: [{
          code: 'WG_POLICY_IO' as const, message: `policy load failed: ${(err as Error)?.message ?? String(err)}`,
          file: this.opts.paths.join(','), line: 1, col: 1, path: '', severity: 'error' as const,
        }],
      };
    }

    if (!result.ok) {
      for (const d of result.diagnostics) log.error({ trigger, code: d.code }, formatDiagnostic(d));
      const record: ReloadRecord = {
        schema: AUDIT_SCHEMA_VERSION, event: 'reload', time: time(), result: 'rejected',
        snapshot: { version, hash: '' }, previous: prevId,
        policies: previous?.policies.length ?? 0, rules: previous?.ruleCount ?? 0,
        errors: recordErrors(result.diagnostics), trigger,
      };
      log.error({ trigger, errors: record.errors.length, inForce: prevId }, previous
        ? 'policy set rejected; the previous snapshot stays in force'
        : 'policy set rejected; no snapshot is loaded, every CONNECT is denied and the gateway is not ready');
      this.opts.onRecord(record);
      return record;
    }

    for (const w of result.warnings) log.warn({ trigger, code: w.code }, formatDiagnostic(w));
    const next = result.snapshot;
    if (previous && previous.hash === next.hash) {
      const record: ReloadRecord = {
        schema: AUDIT_SCHEMA_VERSION, event: 'reload', time: time(), result: 'unchanged',
        snapshot: prevId, policies: previous.policies.length, rules: previous.ruleCount, errors: [], trigger,
      };
      log.info({ trigger, snapshot: prevId }, 'policy files unchanged');
      this.opts.onRecord(record);
      return record;
    }

    // The swap and the re-check run in one synchronous step: nothing can be decided in between.
    store.swap(next);
    const closedTunnels = this.opts.recheck();
    const record: ReloadRecord = {
      schema: AUDIT_SCHEMA_VERSION, event: 'reload', time: time(), result: 'applied',
      snapshot: { version: next.version, hash: next.hash },
      policies: next.policies.length, rules: next.ruleCount, errors: [], trigger, closedTunnels,
    };
    if (previous) record.previous = prevId;
    const { files, expressions } = this.cache.stats;
    log.info({ trigger, snapshot: record.snapshot, policies: record.policies, rules: record.rules, closedTunnels, reused: { files: files.hits, expressions: expressions.hits } }, 'policy snapshot applied');
    this.opts.onRecord(record);
    return record;
  }
}
