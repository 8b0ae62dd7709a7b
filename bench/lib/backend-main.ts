/**
 * Entry point of the benchmark backend's own process (backend.ts, `startBackendProcess`): starts
 * the backend on the address given as the first argument (default 127.0.0.1), prints `listening <port>` on stdout, and exits on SIGTERM or when its parent goes.
 */
import { startBackend } from './backend.ts';

const backend = await startBackend(process.argv[2] ?? '127.0.0.1');
process.stdout.write(`listening ${backend.port}\n`);
const stop = (): void => {
  void backend.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The IPC channel closes when the parent exits, even when it is killed without stopping us.
process.once('disconnect', stop);
