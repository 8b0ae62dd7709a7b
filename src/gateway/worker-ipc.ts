/**
 * The messages between the workers-mode primary and its workers (cluster.ts), as types: what a
 * worker starts with, what the primary asks (one entry per operation, with its argument and its
 * answer), and what a worker tells the primary unasked (up, failed, readiness, audit records).
 *
 * Both ends are the same build, so a message is trusted to be what its type says once its `t`
 * (and for an answer, the id of the request it answers) is known; nothing here is exposed to a
 * peer. node:cluster serializes messages as JSON ('json' serialization, the default), so every
 * field is plain data: an error crosses as its message and code, a start-up failure with the
 * operating-system error under it (`StartupFailure`).
 */
import cluster from 'node:cluster';
import type { Registry } from 'prom-client';
import type { ReadinessState } from '../admin/readiness.ts';
import type { CloseRecord, DecisionRecord, MeshReloadRecord, ReloadRecord } from '../audit/record.ts';
import type { AheadResult } from '../audit/sink.ts';
import type { EffectiveConfig } from '../config/resolve.ts';
import type { LogLevel } from '../config/schema.ts';
import { WaygateError, type ErrorCode } from '../errors.ts';
import type { TunnelInfo } from '../hbone/tunnel.ts';
import type { Explanation } from '../policy/explain.ts';
import type { ReloadTrigger } from './reload.ts';
import type { PolicyInfo } from './runtime.ts';

/** Environment variable carrying a worker's start parameters ({@link WorkerStart}, JSON). */
export const WORKER_ENV = 'WAYGATE_WORKER_CONFIG';

/**
 * True in a worker started by WorkerPool (src/gateway/cluster.ts). Here, not there: `waygate
 * serve` asks before it loads cluster.ts and the runtime it imports, which only a worker needs.
 */
export function isGatewayWorker(): boolean {
  return cluster.isWorker && typeof process.env[WORKER_ENV] === 'string';
}

export interface WorkerStart {
  effective: EffectiveConfig;
  /** The primary's side ports: a tunnel to one is a self-call. */
  ownPorts: number[];
  /** Version of the worker's startup load: the primary numbers every worker's loads alike. */
  initialVersion: number;
}

/** A registry's metrics as JSON, what prom-client's `AggregatorRegistry.aggregate` merges. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Every operation the primary asks a worker for: its argument and the worker's answer. */
export interface WorkerOps {
  /** Load the policy files under the version the primary chose (one record per worker). */
  reload: { arg: { trigger: ReloadTrigger; version: number }; result: ReloadRecord };
  /** The worker's metrics, merged by the primary into one exposition. */
  metrics: { arg: null; result: MetricsJson };
  /** `/debug/policy`: the worker's snapshot in force. */
  policy: { arg: null; result: PolicyInfo };
  /** `/debug/connections`: the worker's live tunnels. */
  connections: { arg: null; result: TunnelInfo[] };
  /** `POST /debug/explain` against the worker's snapshot (any worker: they load the same files). */
  explain: { arg: unknown; result: Explanation };
  /** `POST /logging`: the worker's own operational log level. */
  logLevel: { arg: LogLevel; result: { previous: LogLevel } };
  /** Drain, close, flush the records; the worker exits once this is answered. */
  drain: { arg: { deadlineMs: number }; result: { remaining: number } };
}

export type WorkerOp = keyof WorkerOps;

/** A request for operation `K`. */
export interface WorkerRequestOf<K extends WorkerOp> {
  t: 'req';
  id: number;
  op: K;
  arg: WorkerOps[K]['arg'];
}

/**
 * A worker's answer to request `id`, for operation `K`. Generic in `K` so that a handler table
 * indexed by `req.op` takes `req.arg` and gives this operation's result without a cast.
 */
export interface WorkerResultOf<K extends WorkerOp> {
  t: 'res';
  id: number;
  op: K;
  ok: true;
  value: WorkerOps[K]['result'];
}

/** A request the worker could not serve: its error as plain data. */
export interface WorkerFailure {
  t: 'res';
  id: number;
  op: WorkerOp;
  ok: false;
  error: string;
  code?: ErrorCode;
}

export type WorkerRequest = { [K in WorkerOp]: WorkerRequestOf<K> }[WorkerOp];
export type WorkerResponse = { [K in WorkerOp]: WorkerResultOf<K> }[WorkerOp] | WorkerFailure;

/** Why a worker could not start: its error, and the operating-system error under it if any. */
export interface StartupFailure {
  message: string;
  code?: ErrorCode;
  system?: { message: string; code: string; syscall: string; address?: string; port?: number; path?: string };
}

/**
 * The primary's answer to write-ahead decision records (`seq` of a worker's `audit` message): what
 * became of each (src/audit/sink.ts AheadResult), sent once per event-loop turn for all the
 * records of that worker the turn settled.
 */
export interface AuditAcks {
  t: 'auditAck';
  acks: [seq: number, result: AheadResult][];
}

export type ToWorker = WorkerRequest | AuditAcks;

export type FromWorker =
  | { t: 'up'; hbone: string; startup: ReloadRecord; readiness: ReadinessState }
  | { t: 'failed'; failure: StartupFailure }
  | { t: 'readiness'; state: ReadinessState }
  /** `seq`: a write-ahead record, answered with an {@link AuditAcks} entry once written (or not). */
  | { t: 'audit'; kind: 'decision'; record: DecisionRecord; seq?: number }
  | { t: 'audit'; kind: 'close'; record: CloseRecord }
  | { t: 'audit'; kind: 'reload'; record: ReloadRecord | MeshReloadRecord }
  | WorkerResponse;

/** A worker's start-up error as plain data, for the primary to rebuild and report. */
export function describeStartupFailure(err: unknown): StartupFailure {
  const failure: StartupFailure = { message: (err as Error)?.message ?? String(err) };
  if (err instanceof WaygateError) failure.code = err.code;
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const s = e as NodeJS.ErrnoException & { address?: string; port?: number };
    if (typeof s.code === 'string' && typeof s.syscall === 'string') {
      failure.system = { message: s.message, code: s.code, syscall: s.syscall, address: s.address, port: s.port, path: s.path };
      break;
    }
  }
  return failure;
}

/** The primary's copy of a worker's start-up error, the OS error (address, port) as its cause. */
export function workerStartupError(workerId: number, f: StartupFailure): WaygateError {
  const cause = f.system ? Object.assign(new Error(f.system.message), f.system) : undefined;
  return new WaygateError(f.code ?? 'WG_CONFIG', `worker ${workerId}: ${f.message}`, { cause });
}
