/**
 * The one way tests run `waygate serve` as a child process (`node bin/waygate.js serve ARGS`, what
 * `npm start` runs): its operational log (JSON lines on stderr) parsed as it arrives, waits for a
 * log line that are bounded and fail with the log so far, the addresses from the "listening" line
 * (so every port can be 0), and a stop that resolves with the exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The CLI entry point. */
export const WAYGATE_BIN = fileURLToPath(new URL('../../bin/waygate.js', import.meta.url));

/** How long a wait for a log line lasts unless the call says otherwise (a cold start under load). */
export const DEFAULT_LINE_WAIT_MS = 30_000;

export type LogLine = Record<string, unknown>;

/** Bound addresses from the "listening" line, `host:port` each. */
export interface ServeAddresses {
  hbone: string;
  ready: string;
  metrics: string;
  admin: string;
}

export interface ServeProcess {
  child: ChildProcess;
  /** Every stderr line so far, parsed (`{ raw }` when not JSON). */
  lines: LogLine[];
  /**
   * Resolves with the first line (already seen or future) matching `pred`. Rejects, with the log
   * so far, when the process exits first or after `timeoutMs` (default 30 s).
   */
  waitForLine(pred: (l: LogLine) => boolean, opts?: { what?: string; timeoutMs?: number }): Promise<LogLine>;
  /** The addresses of the "listening" line (logged at `info` once every listener is bound). */
  listening(opts?: { timeoutMs?: number }): Promise<ServeAddresses>;
  /** Raw stderr so far, for failure messages. */
  stderr(): string;
  /** Sends `signal` (default SIGTERM) unless the process already exited; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code once the process has exited (whoever stopped it). */
  exited: Promise<number | null>;
}

export interface SpawnServeOptions {
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Working directory: the embedded profile mints its PKI into `<cwd>/.waygate/pki`. */
  cwd?: string;
  /** The entry point to run instead of this repository's bin/waygate.js (an assembled image's, test/ship). */
  bin?: string;
}

/** Starts `waygate serve ARGS`; does not wait for anything (see `listening()`, `startServe`). */
export function spawnServe(args: string[], opts: SpawnServeOptions = {}): ServeProcess {
  const child = spawn(process.execPath, [opts.bin ?? WAYGATE_BIN, 'serve', ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  let raw = '';
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    raw += chunk;
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      if (process.env['WAYGATE_TEST_LOG']) process.stderr.write(text + '\n');
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(line)) waiters.splice(i, 1)[0]!.resolve(line);
      }
    }
  });
  // The audit log goes to stdout unless the config names a file: drained, never read here.
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logSoFar = (): string => lines.map((l) => JSON.stringify(l)).join('\n');

  const waitForLine: ServeProcess['waitForLine'] = (pred, o = {}) => {
    const seen = lines.find(pred);
    if (seen) return Promise.resolve(seen);
    const what = o.what ?? `log line satisfying ${pred.toString()}`;
    const timeoutMs = o.timeoutMs ?? DEFAULT_LINE_WAIT_MS;
    return new Promise((resolve, reject) => {
      let settled = false;
      const waiter = {
        pred,
        resolve: (l: LogLine) => {
          settled = true;
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        settled = true;
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`waygate serve: no ${what} within ${timeoutMs} ms; log:\n${logSoFar()}`));
      }, timeoutMs);
      waiters.push(waiter);
      void exited.then((code) => {
        if (settled) return;
        clearTimeout(timer);
        reject(new Error(`waygate serve exited (${code}) before the ${what}; log:\n${logSoFar()}`));
      });
    });
  };

  return {
    child,
    lines,
    exited,
    waitForLine,
    async listening(o = {}) {
      const l = await waitForLine((x) => x['msg'] === 'listening', { what: '"listening" log line', timeoutMs: o.timeoutMs });
      return { hbone: String(l['hbone']), ready: String(l['ready']), metrics: String(l['metrics']), admin: String(l['admin']) };
    },
    stderr: () => raw,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A `waygate serve` that logged "listening". */
export type StartedServe = ServeProcess & { readonly addresses: ServeAddresses };

/**
 * Starts `waygate serve ARGS` and resolves once it logged "listening" (after the first policy load
 * and every listener bound), with its addresses. A process that does not get there is killed and
 * the start rejects with its log.
 */
export async function startServe(args: string[], opts: SpawnServeOptions & { startTimeoutMs?: number } = {}): Promise<StartedServe> {
  const serve = spawnServe(args, opts);
  try {
    return { ...serve, addresses: await serve.listening({ timeoutMs: opts.startTimeoutMs }) };
  } catch (err) {
    await serve.stop('SIGKILL');
    throw err;
  }
}
