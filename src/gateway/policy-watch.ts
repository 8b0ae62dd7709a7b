/**
 * The policy watch as the composition root (gateway.ts) runs it, in a single process or in the
 * workers-mode primary: file changes trigger `reload('watch')`, and what the watcher goes
 * through is on the operational log, where an operator looks when a change did not apply.
 */
import type { GatewayConfig } from '../config/schema.ts';
import { DEFAULT_POLL_INTERVAL_MS, watchPolicyPaths, type PolicyWatcher } from '../policy/watch.ts';
import type { OpsLogger } from '../telemetry/log.ts';

export function startPolicyWatch(
  config: Readonly<GatewayConfig>,
  baselineHash: string,
  log: OpsLogger,
  reload: () => Promise<unknown>,
): PolicyWatcher {
  return watchPolicyPaths(config.policies.paths, baselineHash, {
    debounceMs: config.policies.debounceMs,
    onChange: () => void reload().catch((err) => log.error({ err: (err as Error).message }, 'reload failed')),
    onError: (err) => log.warn({ err: err.message }, 'policy watch error'),
    onMode: (mode, { dir, reason }) => {
      if (mode === 'poll') {
        log.warn({ dir, reason, pollIntervalMs: DEFAULT_POLL_INTERVAL_MS }, 'cannot watch a policy directory; polling it instead (changes apply within the poll interval). SIGHUP or POST /debug/reload reload at once');
      } else {
        log.info({ dir }, 'policy directories are watched again; polling stopped');
      }
    },
  });
}
