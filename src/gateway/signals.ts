/**
 * Process signals (docs/design.md §5 "Shutdown"):
 * - SIGTERM (the kubelet) or SIGINT (Ctrl-C): start a graceful drain.
 * - A second SIGTERM/SIGINT during the drain: exit at once (code 1), as an operator who presses
 *   Ctrl-C twice expects. Whatever the audit logger buffered is flushed synchronously first.
 * - SIGHUP: reload the policies (the classic daemon convention).
 */
import type { OpsLogger } from '../telemetry/log.ts';

export interface SignalHandlers {
  onDrain: (signal: NodeJS.Signals) => void;
  onReload: () => void;
  /** Synchronous last words before an immediate exit (flush the audit log). */
  onForcedExit?: () => void;
  log: OpsLogger;
}

/** Installs the handlers; returns a function that removes them. */
export function installSignalHandlers(h: SignalHandlers): () => void {
  let draining = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (draining) {
      h.log.warn({ signal }, 'second signal during drain: exiting now');
      try {
        h.onForcedExit?.();
      } finally {
        process.exit(1);
      }
    }
    draining = true;
    h.log.info({ signal }, 'signal received: draining');
    h.onDrain(signal);
  };
  const hup = (): void => {
    h.log.info({ signal: 'SIGHUP' }, 'signal received: reloading policies');
    h.onReload();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', hup);
  return () => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    process.off('SIGHUP', hup);
  };
}
