/**
 * What `waygate serve` does: resolve the config, print it (`--print-config`) or start the gateway
 * and wait for its drain (src/cli/serve.ts registers the command; exit codes below).
 */
import path from 'node:path';
import { parseHostPort } from '../config/address.ts';
import { flagsToLayer, type ServeFlagValues } from '../config/flags.ts';
import { ConfigError } from '../config/load.ts';
import { configToYaml, resolveConfig, type EffectiveConfig } from '../config/resolve.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import { isGatewayWorker } from '../gateway/worker-ipc.ts';
import { createOpsLogger } from '../telemetry/log.ts';

/** `waygate serve` exit codes; the table in docs/operating.md lists the same. */
export const SERVE_EXIT = {
  /** Drained and exited on SIGTERM, SIGINT or POST /quitquitquit. */
  drained: 0,
  /** Could not start (port in use, unreadable certificate or audit log), or a second signal. */
  failed: 1,
  /** A bad flag or an invalid config file. */
  usage: 2,
} as const;

/** What Node attaches to an error from the operating system (listen, open, ...). */
interface SystemError extends Error {
  code: string;
  syscall: string;
  address?: string;
  port?: number;
}

/** The operating-system error somewhere in `err`'s cause chain, if there is one. */
function systemCause(err: unknown): SystemError | undefined {
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const s = e as Partial<SystemError>;
    if (typeof s.code === 'string' && typeof s.syscall === 'string') return e as SystemError;
  }
  return undefined;
}

/** The listeners configured on `port` (and `host`, when that narrows it), with their setting and flag. */
function listenersAt(config: Readonly<GatewayConfig>, host: string | undefined, port: number): string[] {
  const listeners: [address: string, setting: string][] = [
    [config.listen, 'the HBONE listener (listen, --listen)'],
    [config.admin.readyAddress, 'the readiness listener (admin.readyAddress, --ready-address)'],
    [config.admin.metricsAddress, 'the metrics listener (admin.metricsAddress, --metrics-address)'],
    [config.admin.adminAddress, 'the admin listener (admin.adminAddress, --admin-address)'],
  ];
  const onPort = listeners.filter(([a]) => {
    const hp = parseHostPort(a);
    return hp.ok && hp.value.port === port;
  });
  const onHost = onPort.filter(([a]) => {
    const hp = parseHostPort(a);
    return hp.ok && hp.value.host === host;
  });
  return (onHost.length > 0 ? onHost : onPort).map(([, setting]) => setting);
}

/**
 * The one line `waygate serve` prints when the gateway cannot start. A port in use names the
 * address and the setting that chose it: the usual cause is a second gateway started on the same
 * machine. Errors waygate raises on purpose are their code and message; anything else is a bug
 * and keeps its stack.
 */
export function startupFailureMessage(err: unknown, config: Readonly<GatewayConfig>): string {
  const sys = systemCause(err);
  if (sys?.code === 'EADDRINUSE' && typeof sys.port === 'number') {
    const address = sys.address && sys.address.includes(':') ? `[${sys.address}]:${sys.port}` : `${sys.address ?? '*'}:${sys.port}`;
    const settings = listenersAt(config, sys.address, sys.port);
    const which = settings.length > 0 ? ` for ${settings.join(' and ')}` : '';
    return `waygate serve: cannot start: ${address} is already in use (EADDRINUSE)${which}; another waygate may already be running: stop it or choose another address`;
  }
  if (err instanceof WaygateError) return `waygate serve: cannot start: ${err.code}: ${err.message}`;
  return `waygate serve: cannot start: ${(err as Error)?.stack ?? String(err)}`;
}

/**
 * Where the audit records go, in words, for the start-up log: a person who ran `npm start` learns
 * where to point `waygate audit` (a path relative to the working directory when it is inside it).
 */
export function auditLocation(destination: string, cwd: string = process.cwd()): { path: string | null; message: string } {
  if (destination === '-') return { path: null, message: 'audit records go to stdout' };
  const rel = path.relative(cwd, destination);
  const shown = rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : destination;
  return { path: shown, message: `audit records go to ${shown} (review them with: waygate audit summary ${shown})` };
}

/** `waygate serve`; resolves to the exit code (SERVE_EXIT), or exits the process once the gateway has drained. */
export async function serve(flags: ServeFlagValues): Promise<number> {
  // A worker started by the primary takes its config from the primary, not from its own argv.
  // Any other process (the primary, a single process, `--print-config`) need not load
  // src/gateway/cluster.ts and the runtime it imports.
  if (isGatewayWorker()) {
    const { runWorker } = await import('../gateway/cluster.ts');
    process.exit(await runWorker());
  }

  let effective: EffectiveConfig;
  try {
    effective = resolveConfig({ configFile: flags.config, flags: flagsToLayer(flags) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      return SERVE_EXIT.usage;
    }
    throw err;
  }
  if (flags.printConfig) {
    process.stdout.write(configToYaml(effective));
    return 0;
  }

  const { startGateway } = await import('../gateway/gateway.ts');
  const log = createOpsLogger({ level: effective.config.log.level });
  let gateway;
  try {
    gateway = await startGateway({ effective, handleSignals: true, log });
  } catch (err) {
    // startGateway closed what it had opened (listeners, audit log) before rethrowing.
    process.stderr.write(startupFailureMessage(err, effective.config) + '\n');
    return SERVE_EXIT.failed;
  }
  const audit = auditLocation(effective.config.audit.destination);
  log.info({ audit: effective.config.audit.destination }, audit.message);
  const code = await gateway.done;
  // Everything is closed and flushed; leave now rather than wait on a stray handle (the kubelet
  // counts the grace period down while we linger).
  process.exit(code);
}
