/**
 * Running `waygate ARGS` from tests, on the compiled product (dist/, `npm test` builds it first):
 * - `runWaygate`: one real `node bin/waygate.js ARGS` process, for what is about the process
 *   boundary (exit codes, stdin through a pipe) and to prove the shipped entry point prints it;
 * - `startCliBatch`: one child process that runs many invocations one after another through the
 *   same main() (test/helpers/cli-batch-child.mjs), for comparing outputs: each `waygate` process
 *   costs ~0.5-0.8 s of CPU, mostly loading the CLI, and a batch loads it once.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT, runWaygate as runWaygateProcess } from '../../examples/traffic/gateway-process.ts';

const CHILD = fileURLToPath(new URL('./cli-batch-child.mjs', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Written to stdin, then EOF (default: nothing). */
  input?: string;
}

/** NO_COLOR: outputs compared as text whatever the terminal the tests run in. */
const ENV = { ...process.env, NO_COLOR: '1' };

/**
 * `node bin/waygate.js ARGS` in the repository root, its stdout as text; resolves once it exited
 * and its pipes closed (examples/traffic/gateway-process.ts runWaygate, which keeps stdout as bytes).
 */
export async function runWaygate(args: string[], opts: CliRunOptions = {}): Promise<CliResult> {
  const r = await runWaygateProcess(args, { cwd: REPO_ROOT, env: ENV, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

export interface CliBatch {
  /** `waygate ARGS` in the batch process (cwd: the repository root), after every earlier run. */
  run(args: string[], opts?: CliRunOptions): Promise<CliResult>;
  /** Ends the batch process; resolves once it exited. */
  close(): Promise<void>;
}

interface Reply extends CliResult {
  id: number;
}

/** Starts the batch process; resolves once it loaded the CLI. */
export async function startCliBatch(): Promise<CliBatch> {
  const child = fork(CHILD, [], { cwd: REPO_ROOT, env: ENV, execArgv: [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  // The child's own stdout/stderr carry nothing unless it crashes: kept for that message.
  let crash = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (crash += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (crash += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pending = new Map<number, { resolve: (r: CliResult) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  const failAll = (code: number | null): void => {
    for (const p of pending.values()) p.reject(new Error(`the CLI batch process exited (${code}):\n${crash}`));
    pending.clear();
  };
  void exited.then(failAll);
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    void exited.then((code) => reject(new Error(`the CLI batch process exited (${code}) before it was ready:\n${crash}`)));
  });
  child.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    p?.resolve({ code: m.code, stdout: m.stdout, stderr: m.stderr });
  });
  return {
    run(args, opts = {}) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ id, args, input: opts.input ?? '' });
      });
    },
    async close() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
}
