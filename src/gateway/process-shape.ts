/**
 * The pieces of the composition root (gateway.ts) that do not depend on the data plane's shape
 * (this process's runtime, or the workers-mode primary's pool): the options and the running
 * handle `startGateway` works with, the admin API's config view, the side ports a tunnel must not
 * reach, the side listeners, and closing the audit log at shutdown or after a failed start.
 */
import path from 'node:path';
import type { AuditLogger } from '../audit/logger.ts';
import type { ReloadRecord } from '../audit/record.ts';
import type { AuditSink } from '../audit/sink.ts';
import { startAdminServers, type AdminHandlers, type AdminServers } from '../admin/server.ts';
import { parseHostPort } from '../config/address.ts';
import type { EffectiveConfig } from '../config/resolve.ts';
import type { GatewayConfig } from '../config/schema.ts';
import type { OpsLogger } from '../telemetry/log.ts';
import type { ReloadTrigger } from './reload.ts';
import type { GatewayRuntime } from './runtime.ts';

export interface GatewayOptions {
  effective: EffectiveConfig;
  /** Install SIGTERM/SIGINT/SIGHUP handlers (the CLI does; in-process tests do not). */
  handleSignals?: boolean;
  /** Injected by tests; by default the operational log goes to stderr. */
  log?: OpsLogger;
  /** Injected by tests; by default built from `config.audit`. `end()` (if any) is awaited at shutdown. */
  audit?: AuditSink & Partial<Pick<AuditLogger, 'end' | 'flushSync'>>;
}

/** Bound addresses, `host:port`. */
export interface GatewayAddresses {
  hbone: string;
  ready: string;
  metrics: string;
  admin: string;
}

export interface RunningGateway {
  readonly addresses: GatewayAddresses;
  reload(trigger: ReloadTrigger): Promise<ReloadRecord>;
  /** Graceful drain then close; resolves when everything is closed and the audit log flushed. */
  shutdown(reason: string): Promise<void>;
  /** Resolves with the process exit code once the gateway has shut down. */
  readonly done: Promise<number>;
  /** The single-process runtime, for tests (undefined in workers mode). */
  readonly runtime?: GatewayRuntime;
}

/** True when the TLS paths are the embedded profile's own dev PKI (so it may be minted). */
export function usesEmbeddedPki(effective: EffectiveConfig): string | null {
  if (effective.profile !== 'embedded') return null;
  const { certFile, keyFile, trustBundleFiles } = effective.config.tls;
  const dir = path.dirname(certFile);
  const same = path.basename(certFile) === 'server.crt'
    && keyFile === path.join(dir, 'server.key')
    && trustBundleFiles.length === 1 && trustBundleFiles[0] === path.join(dir, 'root.crt');
  return same ? dir : null;
}

/** The effective config as the admin API shows it: paths, never certificate or key contents. */
export function configView(effective: EffectiveConfig, extra: Record<string, unknown> = {}): unknown {
  return { profile: effective.profile, file: effective.file, config: effective.config, ...extra };
}

/** Side-port ports, for the data plane's self-call check. */
export function sidePorts(addresses: { ready: string; metrics: string; admin: string }): number[] {
  const out: number[] = [];
  for (const a of [addresses.ready, addresses.metrics, addresses.admin]) {
    const hp = parseHostPort(a);
    if (hp.ok) out.push(hp.value.port);
  }
  return out;
}

/** Flushes and closes the audit destination (stdout is flushed, left open). */
export async function closeAudit(audit: NonNullable<GatewayOptions['audit']>): Promise<void> {
  if (audit.end) await audit.end();
  else await audit.flush();
}

/**
 * Closes the audit destination on a start-up that failed, then rethrows the start-up error. An
 * audit close that fails too is logged, never thrown: it must not replace the error the operator
 * needs to see (a port in use, a bad certificate), which `waygate serve` prints and exits on.
 */
export async function failStartup(err: unknown, audit: NonNullable<GatewayOptions['audit']>, log: OpsLogger): Promise<never> {
  await closeAudit(audit).catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'audit log close failed after a failed start-up'));
  throw err;
}

/**
 * Opens the side listeners (ready, metrics, admin) as `config.admin` says. On failure the audit
 * log is closed and the listener's error rethrown (`failStartup`).
 */
export async function startSideListeners(
  config: Readonly<GatewayConfig>,
  handlers: AdminHandlers,
  audit: NonNullable<GatewayOptions['audit']>,
  log: OpsLogger,
): Promise<AdminServers> {
  try {
    return await startAdminServers({
      readyAddress: config.admin.readyAddress,
      metricsAddress: config.admin.metricsAddress,
      adminAddress: config.admin.adminAddress,
      handlers,
      onError: (err, route) => log.error({ route, err: (err as Error)?.message }, 'admin handler failed'),
    });
  } catch (err) {
    return failStartup(err, audit, log);
  }
}
