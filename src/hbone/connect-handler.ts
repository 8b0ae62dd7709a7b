/**
 * One CONNECT, from its HEADERS to an open tunnel or a refusal (docs/design.md §1-2), in the phases of
 * ztunnel's `serve_connect`. Each phase returns what the next needs or one typed
 * {@link ConnectOutcome} that ends the CONNECT:
 *
 *   1. request    validate the CONNECT (400), read the informational headers, resolve the
 *                 destination, build the decision context, register the tunnel (before the first
 *                 check, docs/design.md §3: a recheck from then on includes it);
 *   2. authorize  identity (`no_identity`), policy (deny status), the destination: allowed
 *                 networks (deny status: the gateway refused, the destination did not fail), a
 *                 `host:port` without a route (503, as ztunnel's "no upstream"), a self-call (503);
 *   3. connect    the upstream connector prepares the dial (src/upstream/connector.ts; 503 if it cannot carry
 *                 the tunnel), a dial slot on the connection (waited for in arrival order within
 *                 the connect timeout, dial-queue.ts), the dial (503 on failure). A client reset,
 *                 a recheck, a drain or a shutdown while waiting or dialing abandons the dial at once;
 *   4. open       answer 200 and pipe (tunnel.ts).
 *
 * The status of every refusal comes from one table (connect-outcome.ts `statusFor`), and the
 * decision record is written in one place, the attempt's {@link ConnectAttempt.conclude} /
 * `open` / `fail` (ztunnel's result tracker): exactly one decision record per CONNECT, one close
 * record per tunnel that passed authorization (including one refused with 503 after it: a failed
 * dial, no route, a self-call, no dial slot within the connect timeout).
 *
 * A peer whose certificate verifies but carries no accepted SPIFFE ID keeps its TLS connection,
 * and each of its CONNECTs is denied with the deny status and reason `no_identity` without
 * consulting policy. docs/design.md §2 allows this or a handshake refusal; per-CONNECT denial leaves an
 * audit record for every attempt, which a handshake refusal cannot.
 */
import { randomUUID } from 'node:crypto';
import { constants as h2c, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { decisionContext, streamAttributes, type DecisionContext } from '../policy/context.ts';
import type { Decision } from '../policy/decision.ts';
import { ConnectOutcome, statusFor } from './connect-outcome.ts';
import { parseConnectRequest } from './connect-request.ts';
import { OUTSIDE_MESH, type ResolvedDestination } from './destination.ts';
import { DialSlotTimeoutError, type AdmittedDial } from './dial-queue.ts';
import { notify } from './observer.ts';
import type { Choice, Routed } from './route.ts';
import type { UpstreamRecord } from '../audit/record.ts';
import type { ConnectRecorder, RecordBase, RecordedOutcome } from './records.ts';
import { parseRequestHeaders, type ParsedRequestHeaders } from './request-headers.ts';
import type { ResolvedServerOptions } from './server-options.ts';
import type { HboneConnection } from './session.ts';
import { Tunnel, type TunnelClosedHook } from './tunnel.ts';
import type { TunnelRegistry } from './tunnel-registry.ts';
import { UpstreamDialError, type UpstreamConnection, type UpstreamTarget } from '../upstream/connector.ts';

/**
 * The decision context of one CONNECT: everything a policy may read about it, as the attribute
 * catalogue (policy/attributes.ts) reads it from the connection's attributes and this CONNECT's
 * facts (its `:authority`, where that leads, its headers, the decision time). It lives as long as
 * the tunnel (a recheck re-decides with it); its `destination` is also the tunnel's and its records'.
 */
export function buildDecisionContext(
  conn: HboneConnection,
  authority: string,
  target: ResolvedDestination,
  request: ParsedRequestHeaders,
  now: Date,
): DecisionContext {
  return decisionContext(conn.attributes, streamAttributes({ authority, target, request, now }));
}

/** The stream's own 'error' listener: failures are handled through 'close' and the close reason. */
function ignoreStreamError(): void {}

/** Where a CONNECT leads before its `:authority` was read or when it does not parse. */
const NO_TARGET: ResolvedDestination = Object.freeze({ ip: '', host: '', port: 0, ...OUTSIDE_MESH });
/** The request of a CONNECT whose headers could not be read (the failure path's context). */
const NO_REQUEST: ParsedRequestHeaders = Object.freeze({ headers: {}, baggage: {}, traceId: '', forwarded: [], forwardedNetwork: '' });

/** Phase 2's pick: where an allowed tunnel is dialed. */
type DialChoice = Extract<Choice, { kind: 'dial' }>;

/** What every attempt of one server shares (one object per server). */
interface AttemptEnv {
  readonly recorder: ConnectRecorder;
  readonly denyStatus: number;
  readonly idleTimeoutMs: number;
  readonly log: ResolvedServerOptions['log'];
}

/**
 * One CONNECT being handled, and its result tracker: what its record is about (the decision
 * context, once phase 1 built it), what the failure path must know (the decision, the tunnel, the
 * upstream while the handler owns it), and the only three ways its decision record is written.
 */
class ConnectAttempt implements RecordBase {
  readonly decisionId = randomUUID();
  /** The decision time (the context's `now`). */
  readonly now = new Date();
  /** Monotonic arrival time: the connect budget counts from it. */
  readonly startedAt = performance.now();
  readonly streamId: number;
  #context: DecisionContext | null = null;
  tunnel: Tunnel | null = null;
  decision: Decision | null = null;
  /** Phase 1's route (null until the CONNECT parsed). */
  routed: Routed | null = null;
  /** The connected upstream from the dial until `open()` hands it to the tunnel: the failure path closes it. */
  held: UpstreamConnection | null = null;
  /** The record's `upstream` (where the tunnel went or was to go) and `detail` (why the transport refused). */
  upstream: UpstreamRecord | undefined = undefined;
  detail: string | undefined = undefined;
  #recorded = false;

  constructor(
    readonly conn: HboneConnection,
    readonly stream: ServerHttp2Stream,
    readonly env: AttemptEnv,
  ) {
    this.streamId = stream.id ?? 0;
  }

  /** The CONNECT's decision context: what its record holds and its tunnel is re-decided with. */
  get context(): DecisionContext {
    // Only a failure before phase 1 built it records this one: what is known of the connection.
    return (this.#context ??= buildDecisionContext(this.conn, '', NO_TARGET, NO_REQUEST, this.now));
  }

  set context(ctx: DecisionContext) {
    this.#context = ctx;
  }

  /** Ends a CONNECT that does not become a tunnel: answer, decision record, then the pending tunnel's end. */
  conclude(o: ConnectOutcome): void {
    const status = this.#answer(o.answer === 'status' ? statusFor(o.reason, this.env.denyStatus) : 0, h2c.NGHTTP2_CANCEL);
    this.#record(o, status);
    const t = this.tunnel;
    if (!t) return;
    if (o.authorized) t.authorized = true;
    t.setCloseDecision(o.closeDecision);
    t.finishPending(o.closeReason);
  }

  /**
   * The allow, write-ahead (docs/operating.md, "Audit log guarantees"): the decision record (200)
   * is handed to the operating system first, then the tunnel answers 200 and takes the upstream
   * (`a.held` until then). A record that cannot be written within the audit log's bound, or a log
   * that is failing with `audit.onFailure: deny`, refuses the CONNECT with `audit_unavailable`.
   */
  async open(decision: Decision, upstream: UpstreamConnection): Promise<void> {
    const allowed: RecordedOutcome = { verdict: 'allow', reason: decision.reason, decision, withRule: true };
    if (this.#recorded) throw new Error(`second decision record for CONNECT ${this.decisionId}`);
    // Building the record may throw (the header policy hook): then nothing was written, and the
    // failure path writes the one record.
    const ahead = this.env.recorder.decisionAhead(this, allowed, statusFor(decision.reason, this.env.denyStatus));
    this.#recorded = true;
    const result = typeof ahead === 'string' ? ahead : await ahead;
    const t = this.tunnel!;
    if (result === 'withdrawn') {
      // Never written: the refusal is this CONNECT's one decision record.
      this.#recorded = false;
      this.held = null;
      upstream.destroy();
      return this.conclude(ConnectOutcome.auditUnavailable(decision));
    }
    if (result === 'in_flight' || t.revoked || t.streamClosed) {
      // The record (200) is written or being written, but no 200 goes out: refused at the log's
      // bound (503), revoked, or reset by the client while the record was being written. The
      // close record says which.
      this.held = null;
      upstream.destroy();
      const reason = result === 'in_flight' ? 'audit_unavailable' : t.revoked ? t.revoked.reason : 'client_reset';
      if (result === 'in_flight' || t.revoked?.reason === 'draining') this.#answer(503, h2c.NGHTTP2_CANCEL);
      else this.#answer(0, h2c.NGHTTP2_CANCEL);
      t.setCloseDecision(t.revoked?.decision ?? null);
      t.finishPending(reason);
      return;
    }
    this.held = null; // handed over: the tunnel owns it from its first statement on
    t.open(upstream, this.env.idleTimeoutMs);
  }

  /**
   * The handling threw (a bug, or a sink/hook that threw, not a peer's doing): the upstream the
   * handler still owns is closed, the one decision record is written if it was not yet
   * (ConnectOutcome.internalError), the client gets its status if it can still be answered (a
   * reset otherwise), and no registry entry outlives the stream.
   */
  fail(err: unknown): void {
    const log = this.env.log;
    log?.error({ err: (err as Error)?.message ?? String(err), connectionId: this.conn.id, streamId: this.streamId }, 'CONNECT handling failed');
    const t = this.tunnel;
    try {
      if (this.held) {
        this.held.destroy();
        this.held = null;
      }
      if (!this.#recorded) {
        const o = ConnectOutcome.internalError(this.decision, t?.authorized ?? false);
        this.#record(o, this.#answer(statusFor(o.reason, this.env.denyStatus), h2c.NGHTTP2_INTERNAL_ERROR));
      }
    } catch (again) {
      log?.error({ err: (again as Error)?.message ?? String(again), connectionId: this.conn.id }, 'could not record the failed CONNECT');
    } finally {
      if (t && t.state === 'pending') t.finishPending('error');
      else if (t && t.state === 'open') t.fail('error', h2c.NGHTTP2_INTERNAL_ERROR);
      const stream = this.stream;
      if (!stream.destroyed && !stream.closed) stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    }
  }

  /**
   * Answers with `status` and END_STREAM, then asks the client to stop sending (RFC 9113 §8.1:
   * RST_STREAM(NO_ERROR) after a complete response). Returns the status sent, 0 when none could
   * be (status 0, a stream already closed): a stream still open is then reset with `rstCode`.
   */
  #answer(status: number, rstCode: number): number {
    const stream = this.stream;
    if (status !== 0 && !stream.destroyed && !stream.closed && !stream.headersSent) {
      try {
        stream.respond({ ':status': status }, { endStream: true });
        stream.close(h2c.NGHTTP2_NO_ERROR);
        return status;
      } catch {
        // fall through: not answered
      }
    }
    if (!stream.destroyed && !stream.closed) stream.close(rstCode);
    return 0;
  }

  /** The only write of this CONNECT's decision record. */
  #record(o: RecordedOutcome, status: number): void {
    if (this.#recorded) throw new Error(`second decision record for CONNECT ${this.decisionId}`);
    this.env.recorder.decision(this, o, status);
    this.#recorded = true;
  }
}

/** Handles every CONNECT stream of the server's connections. */
export class ConnectHandler {
  /** Past the drain deadline (or close()): a stream that still slips in is answered 503. */
  closing = false;
  readonly #o: ResolvedServerOptions;
  readonly #env: AttemptEnv;
  readonly #registry: TunnelRegistry;
  /** One hook for every tunnel (no per-stream closure): unregister, then the close record. */
  readonly #onTunnelClosed: TunnelClosedHook;

  constructor(o: ResolvedServerOptions, registry: TunnelRegistry, recorder: ConnectRecorder) {
    this.#o = o;
    this.#registry = registry;
    this.#env = { recorder, denyStatus: o.denyStatus, idleTimeoutMs: o.idleTimeoutMs, log: o.log };
    this.#onTunnelClosed = (t, record) => {
      registry.remove(t);
      t.releaseEndpoint();
      if (record) recorder.close(record);
    };
  }

  /** A new CONNECT stream of `conn` (session.ts calls it for every stream). */
  readonly serve = (conn: HboneConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void => {
    stream.on('error', ignoreStreamError);
    void this.#serve(new ConnectAttempt(conn, stream, this.#env), headers, rawHeaders);
  };

  async #serve(a: ConnectAttempt, headers: IncomingHttpHeaders, rawHeaders: string[]): Promise<void> {
    try {
      const tunnel = this.#request(a, headers, rawHeaders);
      if (tunnel instanceof ConnectOutcome) return a.conclude(tunnel);
      const allowed = this.#authorize(a, tunnel);
      if (allowed instanceof ConnectOutcome) return a.conclude(allowed);
      const upstream = await this.#connect(a, tunnel, allowed.decision, allowed.choice);
      if (upstream instanceof ConnectOutcome) return a.conclude(upstream);
      await a.open(allowed.decision, upstream);
    } catch (err) {
      a.fail(err);
    }
  }

  /** Phase 1: the request context, and the tunnel registered before any check. */
  #request(a: ConnectAttempt, headers: IncomingHttpHeaders, rawHeaders: string[]): Tunnel | ConnectOutcome {
    const conn = a.conn;
    const parsed = parseRequestHeaders(rawHeaders, conn.baggageCache);
    const req = parseConnectRequest(headers as Record<string, string | string[] | undefined>);
    if (!req.ok) {
      this.#o.log?.debug({ connectionId: conn.id, streamId: a.streamId, err: req.error.message }, 'malformed CONNECT');
      a.context = buildDecisionContext(conn, req.error.authority, NO_TARGET, parsed, a.now);
      return ConnectOutcome.badRequest();
    }
    const routed = this.#o.router.resolve(req.request.target);
    a.routed = routed;
    const context = buildDecisionContext(conn, req.request.authority, routed.destination, parsed, a.now);
    const destination = context.destination;
    a.context = context;
    // Only a stream that slipped in past the final GOAWAY gets here (nghttp2 ignores later ones).
    if (this.closing) return ConnectOutcome.drainingBeforeStart();
    const tunnel = new Tunnel(
      { decisionId: a.decisionId, streamId: a.streamId, stream: a.stream, session: conn.session, context, destination, forwarded: parsed.forwarded, forwardedNetwork: parsed.forwardedNetwork, startedAt: a.startedAt },
      this.#onTunnelClosed,
    );
    this.#registry.register(tunnel);
    a.tunnel = tunnel;
    tunnel.watchStream();
    return tunnel;
  }

  /** Phase 2: identity, policy, and where the tunnel may be sent (route.ts), or why not. */
  #authorize(a: ConnectAttempt, tunnel: Tunnel): { decision: Decision; choice: DialChoice } | ConnectOutcome {
    if (!a.conn.identity) return ConnectOutcome.noIdentity();
    const decision = this.#safeAuthorize(tunnel.context);
    a.decision = decision;
    if (decision.decision !== 'allow') return ConnectOutcome.policyDenied(decision);
    const choice = this.#o.router.choose(a.routed!);
    if (choice.kind === 'dial') {
      // The balancer's slot is given back when the tunnel ends, whichever way (#onTunnelClosed).
      tunnel.releaseEndpoint = choice.release;
      if (choice.record) a.upstream = choice.record;
      return { decision, choice };
    }
    if (choice.record) a.upstream = choice.record;
    a.detail = choice.detail;
    const log = this.#o.log;
    const destination = tunnel.destination;
    switch (choice.check) {
      case 'not_allowed':
        return ConnectOutcome.destinationNotAllowed(decision);
      case 'no_route':
        // ztunnel answers a hostname it cannot resolve with 503 ("no upstream", NoHostname): the
        // destination is unknown, not refused by the gateway (docs/ztunnel-interop.md D5).
        log?.info({ connectionId: a.conn.id, streamId: a.streamId, destination }, 'CONNECT to a host:port without a configured route: 503');
        return ConnectOutcome.unreachable(decision);
      case 'self_call':
        // docs/design.md §2: a CONNECT to one of the gateway's own ports is answered 503 (a loop, not an
        // unreachable destination).
        log?.info({ connectionId: a.conn.id, destination }, 'CONNECT to the gateway itself refused');
        return ConnectOutcome.unreachable(decision);
      case 'unavailable':
        // Discovery knows no such destination, or no endpoint can take it (docs/waypoint.md).
        log?.info({ connectionId: a.conn.id, streamId: a.streamId, destination, detail: choice.detail }, 'no endpoint for this CONNECT: 503');
        return ConnectOutcome.unreachable(decision);
    }
  }

  /** Phase 3: the upstream connection, or why there is none. */
  async #connect(a: ConnectAttempt, tunnel: Tunnel, decision: Decision, choice: DialChoice): Promise<UpstreamConnection | ConnectOutcome> {
    const { conn, streamId } = a;
    const o = this.#o;
    let target: UpstreamTarget;
    try {
      // HBONE to a mesh endpoint's ztunnel, otherwise the configured (TCP) connector.
      const connector = choice.endpoint?.protocol === 'HBONE' ? o.hboneUpstream : o.upstream;
      if (connector === null) throw new Error('no HBONE connector is configured');
      // What the connector can refuse without the network, it refuses before any socket exists.
      target = connector.prepare({ ip: choice.ip, port: choice.port, context: tunnel.context, endpoint: choice.endpoint });
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      a.detail = `the upstream connector cannot carry this tunnel: ${message}`;
      o.log?.warn({ connectionId: conn.id, streamId, err: message }, 'the upstream connector cannot carry this tunnel: 503');
      return ConnectOutcome.unreachable(decision);
    }
    // Authorized from here on, whether it dials now or waits for a dial slot: a recheck, a drain
    // or a shutdown revokes it either way (tunnel-registry.ts re-checks authorized tunnels only).
    tunnel.authorized = true;
    // Reset before the dial could start: nothing to dial for.
    if (tunnel.streamClosed) return ConnectOutcome.clientGone(decision);
    // Dials now if a slot of the connection is free, else waits for one (dial-queue.ts); the
    // connect budget counts from the CONNECT's arrival either way.
    const dial = conn.dials.admit(target, a.startedAt, () => tunnel.streamClosed);
    if (dial === null) {
      // Every stream the connection may hold is already dialing or waiting: only reachable while
      // a stream the client reset has not been seen closed yet (nghttp2 enforces the stream limit).
      o.log?.warn({ connectionId: conn.id, streamId, destination: tunnel.destination, dialsInFlight: conn.dials.inFlight, dialsWaiting: conn.dials.waiting, limit: o.maxPendingDials }, 'dial queue of this connection full: 503');
      notify(o.observer, 'refused', 'max_pending_dials');
      return ConnectOutcome.unreachable(decision);
    }
    tunnel.setDial(dial);
    let upstream: UpstreamConnection;
    try {
      upstream = await dial.promise;
    } catch (err) {
      tunnel.setDial(null);
      return this.#dialFailed(a, tunnel, decision, dial, err);
    }
    // From here until open() the connection is the handler's: the failure path closes it.
    a.held = upstream;
    tunnel.setDial(null);
    const connectMs = Math.round(performance.now() - (dial.dialStartedAt ?? a.startedAt));
    if (a.upstream) a.upstream = { ...a.upstream, principal: upstream.info.principal, reused: upstream.info.reused, connectMs };
    notify(o.observer, 'upstreamConnected', connectMs, upstream.info);
    if (tunnel.revoked || tunnel.streamClosed) {
      // Revoked, or the client gave up, as the dial completed: no answer can be sent (status 0).
      a.held = null;
      upstream.destroy();
      return tunnel.revoked ? ConnectOutcome.revoked(tunnel.revoked, decision) : ConnectOutcome.clientGone(decision);
    }
    return upstream;
  }

  #dialFailed(a: ConnectAttempt, tunnel: Tunnel, decision: Decision, dial: AdmittedDial, err: unknown): ConnectOutcome {
    const o = this.#o;
    if (tunnel.revoked) return ConnectOutcome.revoked(tunnel.revoked, decision);
    const e = err instanceof UpstreamDialError ? err : new UpstreamDialError('other', (err as Error)?.message ?? String(err), err);
    if (e.kind === 'aborted' || tunnel.streamClosed) {
      // The client reset the stream while we waited or dialed (Tunnel aborted the dial on the
      // stream's close). The decision record keeps what the policy said, with status 0 (no
      // answer could be sent); the close record says client_reset.
      o.log?.debug({ connectionId: a.conn.id, streamId: a.streamId, queued: dial.queued }, 'CONNECT reset by the client before its answer; dial abandoned');
      return ConnectOutcome.clientGone(decision);
    }
    if (e instanceof DialSlotTimeoutError) {
      // Waited its whole connect budget for a slot: the dial cap refused it, no destination failed.
      o.log?.warn({ connectionId: a.conn.id, streamId: a.streamId, destination: tunnel.destination, limit: o.maxPendingDials, connectTimeoutMs: o.connectTimeoutMs }, 'no upstream dial slot freed on this connection within the connect timeout: 503');
      notify(o.observer, 'refused', 'max_pending_dials');
      a.detail = `no upstream dial slot freed on this connection within the connect timeout (${o.connectTimeoutMs} ms)`;
    } else {
      notify(o.observer, 'upstreamFailed', e.kind, Math.round(performance.now() - (dial.dialStartedAt ?? a.startedAt)), a.upstream?.protocol ?? 'tcp');
      o.log?.info({ connectionId: a.conn.id, streamId: a.streamId, err: e.message, kind: e.kind }, 'upstream connect failed');
      a.detail = e.message;
      // The destination's own policy refused the gateway's identity (401/403): the first thing
      // an operator asks about, told apart from a destination that failed (docs/waypoint.md).
      if (e.kind === 'denied') return ConnectOutcome.upstreamDenied(decision);
    }
    return ConnectOutcome.unreachable(decision);
  }

  #safeAuthorize(ctx: DecisionContext): Decision {
    try {
      return this.#o.authorize(ctx);
    } catch (err) {
      // Fail closed (docs/design.md §3): a decision that cannot be taken is a deny, recorded as eval_error.
      this.#o.log?.error({ err: (err as Error).message }, 'authorize threw; denying');
      return {
        decision: 'deny',
        reason: 'eval_error',
        policy: null,
        rule: null,
        audit: [],
        dryRun: null,
        evalErrors: [{ policy: '', rule: '', action: 'ALLOW', mode: 'Enforce', message: (err as Error).message }],
        snapshot: this.#o.snapshotInfo(),
        evalMicros: 0,
      };
    }
  }
}
