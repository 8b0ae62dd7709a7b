/**
 * Sandwich mode (docs/waypoint.md, "Sandwich mode"): waygate as a waypoint whose own pod is in the
 * ambient mesh. The node's ztunnel terminates the client's HBONE, applies nothing of waygate's,
 * and hands each stream to this listener as plain TCP starting with a PROXY v2 header (the
 * client's address, the original destination, TLV 0xD0 = the client's SPIFFE ID; ztunnel
 * `src/proxy.rs` write_proxy_protocol, sent from 127.0.0.1 to 127.0.0.1:<port> of the pod's
 * network namespace when the Gateway carries `ambient.istio.io/waypoint-inbound-binding:
 * PROXY/15088`). Each stream is decided as an HBONE CONNECT is (src/hbone/connect-handler.ts): the
 * same engine, the same decision and close records (src/hbone/records.ts), the destination
 * resolved and the endpoint chosen by the same router (src/hbone/route.ts). An allowed stream goes
 * on as **plaintext to the chosen podIP:targetPort**: the pod's ztunnel captures it and does the
 * mTLS. Never HBONE (ztunnel would wrap it again) and never the VIP (it would loop back here).
 *
 * A peer that is not loopback, a stream without a valid header within `headerTimeoutMs`, a LOCAL
 * header: closed before any decision, with a log line and `waygate_sandwich_rejected_total{reason}`.
 * No audit record is written for them: such bytes carry no identity and no destination, and
 * anything that can reach the port could otherwise fill the audit log.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { CloseReason, UpstreamRecord } from '../audit/record.ts';
import { formatHostPort } from '../config/address.ts';
import { optionInRange } from '../config/ranges.ts';
import { WaygateError } from '../errors.ts';
import { ConnectOutcome } from '../hbone/connect-outcome.ts';
import type { ParsedRequestHeaders } from '../hbone/request-headers.ts';
import type { ConnectRecorder, RecordBase, RecordedOutcome } from '../hbone/records.ts';
import type { Router, Routed } from '../hbone/route.ts';
import type { Revocation } from '../hbone/tunnel.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { isLoopback, parseIp, type ParsedIp } from '../net/address.ts';
import { parseAuthority } from '../net/authority.ts';
import { connectionAttributes, decisionContext, streamAttributes, type DecisionContext } from '../policy/context.ts';
import type { Decision } from '../policy/decision.ts';
import { UpstreamDialError, type PendingDial } from '../upstream/connector.ts';
import { TcpTarget } from '../upstream/tcp.ts';
import { MAX_PROXY_V2_HEADER_BYTES, parseProxyV2, type ParsedProxyHeader, type ProxyV2Rejection } from '../upstream/proxy-v2.ts';

/** Why a stream was closed before any decision (the metric's `reason`). */
export type SandwichRejection = ProxyV2Rejection | 'peer_not_allowed' | 'header_timeout' | 'closed_before_header';

export interface SandwichOptions {
  host: string;
  port: number;
  /** A stream whose whole PROXY header has not arrived this long after accept is closed; default 5,000 ms (`sandwich.headerTimeoutMs`). */
  headerTimeoutMs?: number;
  /** Bounds the TCP dial to the chosen endpoint; default 10,000 ms (`timeouts.connectTimeoutMs`). */
  connectTimeoutMs?: number;
  /** An open stream with no byte either way this long is reset (`idle_timeout`); 0: never (`timeouts.idleTimeoutMs`). */
  idleTimeoutMs?: number;
  /** Trust domains whose SPIFFE IDs are identities (as the HBONE listener's `trustDomains`). */
  acceptedTrustDomains: readonly string[];
  authorize: (ctx: DecisionContext) => Decision;
  /** The waypoint's router (discovery required: only endpoints it picks are dialed). */
  router: Router;
  recorder: ConnectRecorder;
  log?: Logger | undefined;
  /**
   * Which socket peers may speak to the listener; default loopback only (127.0.0.0/8, ::1): the
   * node's ztunnel connects from 127.0.0.1 inside the pod, and the header is trusted because
   * nothing else can reach a loopback port.
   */
  allowPeer?: (ip: ParsedIp) => boolean;
  /** Counts a rejected stream (the gateway's metric). */
  onRejected?: (reason: SandwichRejection) => void;
}

export interface SandwichListener {
  listen(): Promise<AddressInfo>;
  /** Re-decides every live stream; closes (both sockets) those now denied. Returns how many. */
  recheck(authorize: (ctx: DecisionContext) => Decision): number;
  /** Streams decided and not yet closed (dialing or open). */
  readonly live: number;
  /** Stops accepting, waits up to `deadlineMs` for the streams to end, then closes the rest (`draining`). */
  drain(deadlineMs: number): Promise<{ remaining: number }>;
  close(): Promise<void>;
}

/** There is no TLS on this hop (ztunnel terminated it): `connection.tlsVersion` reads `""`. */
const NO_TLS = Object.freeze({}) as unknown as TLSSocket;
/** A stream has no HTTP request: no headers, baggage or trace. */
const NO_REQUEST: ParsedRequestHeaders = Object.freeze({ headers: {}, baggage: {}, traceId: '', forwarded: [], forwardedNetwork: '' });

/** One decided stream: its record, its sockets while they live, and how it ended. */
class SandwichStream implements RecordBase {
  readonly decisionId = randomUUID();
  readonly streamId = 0;
  readonly startedAt = performance.now();
  upstream: UpstreamRecord | undefined = undefined;
  detail: string | undefined = undefined;
  decision: Decision | null = null;
  /** The dial while it is in progress (aborted by a reset), then the connected socket. */
  pending: PendingDial | null = null;
  dialed: Socket | null = null;
  opened = false;
  revoked: Revocation | null = null;
  closeReason: CloseReason | null = null;
  #finished = false;

  constructor(
    readonly context: DecisionContext,
    readonly client: Socket,
    readonly headerLength: number,
    readonly onFinished: (s: SandwichStream) => void,
  ) {}

  /** Closes both sockets with a reset (the peer learns the stream failed, not that it completed). */
  reset(reason: NonNullable<SandwichStream['closeReason']>): void {
    this.closeReason ??= reason;
    this.pending?.abort(); // a no-op once the dial settled
    this.dialed?.resetAndDestroy();
    if (!this.client.destroyed) this.client.resetAndDestroy();
  }

  revoke(r: Revocation): void {
    if (this.revoked) return;
    this.revoked = r;
    this.reset(r.reason);
  }

  /** The close record (once, after both sockets closed or the dial failed). */
  finish(recorder: ConnectRecorder): void {
    if (this.#finished) return;
    this.#finished = true;
    this.onFinished(this);
    const d = this.revoked?.reason === 'policy_changed' ? this.revoked.decision ?? null : null;
    recorder.close({
      schema: 1,
      event: 'close',
      time: new Date().toISOString(),
      decisionId: this.decisionId,
      connectionId: this.context.connection.id,
      streamId: 0,
      source: this.context.source,
      destination: this.context.destination,
      bytesSent: this.opened ? this.client.bytesWritten : 0,
      bytesReceived: this.opened ? Math.max(0, this.client.bytesRead - this.headerLength) : 0,
      durationMs: Math.max(0, Math.round(performance.now() - this.startedAt)),
      closeReason: this.closeReason ?? 'completed',
      ...(this.dialed ? { protocol: 'tcp' as const } : {}),
      ...(d ? { policy: d.policy, rule: d.rule, snapshot: d.snapshot } : {}),
    });
  }
}

/** Creates (does not start) the sandwich listener. */
export function createSandwichListener(options: SandwichOptions): SandwichListener {
  // Range and default of each duration: the config's (src/config/ranges.ts).
  const o = {
    ...options,
    headerTimeoutMs: optionInRange('sandwich.headerTimeoutMs', 'headerTimeoutMs', options.headerTimeoutMs),
    connectTimeoutMs: optionInRange('timeouts.connectTimeoutMs', 'connectTimeoutMs', options.connectTimeoutMs),
    idleTimeoutMs: optionInRange('timeouts.idleTimeoutMs', 'idleTimeoutMs', options.idleTimeoutMs),
  };
  if (!o.router.discovery) {
    throw new WaygateError('WG_CONFIG', 'sandwich.listen needs a discovery source (discovery.meshFile or discovery.kubernetes): sandwich mode sends only to endpoints discovery picks, never to the original destination');
  }
  const log = o.log;
  const allowPeer = o.allowPeer ?? isLoopback;
  const boot = randomUUID().slice(0, 8);
  let seq = 0;
  const live = new Set<SandwichStream>();
  /** Sockets accepted and not yet decided (reading the header, being authorized). */
  const undecided = new Set<Socket>();
  let closing = false;
  let emptyWaiters: (() => void)[] = [];

  const checkEmpty = (): void => {
    if (live.size === 0 && undecided.size === 0) {
      const w = emptyWaiters;
      emptyWaiters = [];
      for (const f of w) f();
    }
  };
  const onFinished = (s: SandwichStream): void => {
    live.delete(s);
    checkEmpty();
  };

  const reject = (socket: Socket, reason: SandwichRejection, detail: string): void => {
    log?.warn({ peer: formatHostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0), reason, detail }, 'sandwich stream rejected before any decision');
    o.onRejected?.(reason);
    socket.destroy();
    undecided.delete(socket);
    checkEmpty();
  };

  const record = (s: SandwichStream, outcome: RecordedOutcome, status: number): void => {
    o.recorder.decision(s, outcome, status);
  };

  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {}); // handled through 'close' and the close reason
    const peer = parseIp(socket.remoteAddress ?? '');
    if (closing) return void socket.destroy();
    if (!peer || !allowPeer(peer)) {
      return reject(socket, 'peer_not_allowed', `peer ${socket.remoteAddress ?? '?'} is not loopback: only the pod's own ztunnel may send PROXY headers here`);
    }
    undecided.add(socket);
    let buffered: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      stopReading();
      reject(socket, 'header_timeout', `no complete PROXY v2 header within ${o.headerTimeoutMs} ms (${buffered.length} bytes received)`);
    }, o.headerTimeoutMs);
    // The peer closed (or only ended its side: the server is half-open) before a whole header.
    const onClose = (): void => {
      stopReading();
      undecided.delete(socket);
      o.onRejected?.('closed_before_header');
      log?.debug({ peer: socket.remoteAddress, bytes: buffered.length }, 'sandwich stream closed before its PROXY header');
      socket.destroy();
      checkEmpty();
    };
    const stopReading = (): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.removeListener('end', onClose);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const r = parseProxyV2(buffered.length > MAX_PROXY_V2_HEADER_BYTES ? buffered.subarray(0, MAX_PROXY_V2_HEADER_BYTES) : buffered);
      if (r.kind === 'incomplete') return;
      stopReading();
      if (r.kind === 'invalid') return reject(socket, r.reason, r.message);
      // Bytes after the header are the client's: held (with what arrives next) until the dial.
      socket.pause();
      void serve(socket, r.header, r.length, buffered.subarray(r.length))
        .catch((err: unknown) => {
          log?.error({ err: (err as Error)?.message ?? String(err) }, 'sandwich stream handling failed');
          socket.destroy();
        })
        .finally(() => {
          undecided.delete(socket);
          checkEmpty();
        });
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('end', onClose);
  });

  /** The decision context of a stream: the header's client and identity, its original destination. */
  function contextOf(header: ParsedProxyHeader, routed: Routed, authority: string): DecisionContext {
    const id = header.spiffeId === '' ? null : parseSpiffeId(header.spiffeId);
    const trusted = id !== null && o.acceptedTrustDomains.includes(id.trustDomain);
    if (header.spiffeId !== '' && !trusted) {
      log?.info({ spiffeId: header.spiffeId }, id ? 'sandwich stream identity is in a trust domain not accepted: no identity' : 'sandwich stream TLV 0xD0 is not a SPIFFE ID: no identity');
    }
    const identity = trusted ? { principal: id.id, trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount } : null;
    const conn = connectionAttributes({
      id: `sandwich-${boot}-${++seq}`,
      tls: NO_TLS,
      identity,
      // The client as ztunnel vouches for it: the socket's own peer is always 127.0.0.1.
      peer: { ip: header.sourceIp, port: header.sourcePort },
    });
    return decisionContext(conn, streamAttributes({ authority, target: routed.destination, request: NO_REQUEST, now: new Date() }));
  }

  async function serve(client: Socket, header: ParsedProxyHeader, headerLength: number, rest: Buffer): Promise<void> {
    const authority = formatHostPort(header.destinationIp, header.destinationPort);
    const target = parseAuthority(authority)!; // two parsed addresses and a non-zero port
    const routed = o.router.resolve(target);
    const s = new SandwichStream(contextOf(header, routed, authority), client, headerLength, onFinished);
    if (!s.context.source.principal) return void (record(s, ConnectOutcome.noIdentity(), 0), client.resetAndDestroy());
    let decision: Decision;
    try {
      decision = o.authorize(s.context);
    } catch (err) {
      log?.error({ err: (err as Error).message }, 'authorize threw; denying');
      record(s, ConnectOutcome.internalError(null, false), 0);
      return void client.resetAndDestroy();
    }
    s.decision = decision;
    if (decision.decision !== 'allow') return void (record(s, ConnectOutcome.policyDenied(decision), 0), client.resetAndDestroy());
    const choice = o.router.choose(routed);
    if (choice.kind === 'refused' || choice.endpoint === null) {
      // A direct dial would go to the original destination (a VIP leads back to this waypoint).
      const detail = choice.kind === 'refused' ? choice.detail : `${authority} is not a mesh endpoint and sandwich mode dials only endpoints discovery picks`;
      if (choice.kind === 'dial') choice.release();
      s.upstream = choice.record ?? undefined;
      s.detail = detail;
      log?.info({ destination: s.context.destination, detail }, 'no endpoint for this sandwich stream');
      const outcome = choice.kind === 'refused' && choice.check === 'not_allowed' ? ConnectOutcome.destinationNotAllowed(decision) : ConnectOutcome.unreachable(decision);
      record(s, outcome, 0);
      client.resetAndDestroy();
      if (outcome.authorized) s.finish(o.recorder);
      return;
    }
    // Plaintext to podIP:targetPort, whatever the endpoint's protocol: the pod's ztunnel wraps it.
    s.upstream = choice.record ? { ...choice.record, protocol: 'tcp' } : undefined;
    live.add(s);
    let clientGone = false;
    // The project's TCP dial (src/upstream/tcp.ts): timeout, failure kinds, abort, one owner.
    const pending = new TcpTarget(choice.ip, choice.port).connect(o.connectTimeoutMs);
    s.pending = pending;
    client.once('close', () => {
      clientGone = true;
      if (!s.opened) {
        s.pending?.abort();
        s.dialed?.destroy();
      }
    });
    const dialStart = performance.now();
    const dialed = await pending.promise.then(
      (c) => c.stream as Socket,
      (err: unknown) => (err instanceof UpstreamDialError ? err : new UpstreamDialError('other', String(err), err)),
    );
    s.pending = null;
    if (dialed instanceof UpstreamDialError || s.revoked || clientGone) {
      choice.release();
      if (!(dialed instanceof UpstreamDialError)) dialed.destroy();
      if (s.revoked) record(s, ConnectOutcome.revoked(s.revoked, decision), 0);
      else if (clientGone) {
        s.closeReason = 'client_reset';
        record(s, ConnectOutcome.clientGone(decision), 0);
      } else {
        const e = dialed as UpstreamDialError;
        s.detail = `${e.message} (${e.kind})`;
        s.closeReason = 'upstream_failed';
        log?.info({ err: e.message, kind: e.kind }, 'sandwich upstream connect failed');
        record(s, ConnectOutcome.unreachable(decision), 0);
        client.resetAndDestroy();
      }
      // A dial that connected but is not used still had an upstream connection (`protocol` in the close record).
      if (!(dialed instanceof UpstreamDialError)) s.dialed = dialed;
      return s.finish(o.recorder);
    }
    s.dialed = dialed;
    const upstream = dialed;
    upstream.on('error', () => {});
    if (s.upstream) s.upstream = { ...s.upstream, connectMs: Math.round(performance.now() - dialStart) };
    // Write-ahead, as an HBONE allow (docs/operating.md, "Audit log guarantees").
    const allowed: RecordedOutcome = { verdict: 'allow', reason: decision.reason, decision, withRule: true };
    const ahead = o.recorder.decisionAhead(s, allowed, 200);
    const result = typeof ahead === 'string' ? ahead : await ahead;
    // Revoked (recheck, drain) or reset by the client while the record was being written.
    const revoked = s.revoked as Revocation | null;
    if (result !== 'written' || revoked || clientGone) {
      choice.release();
      if (result === 'withdrawn') record(s, ConnectOutcome.auditUnavailable(decision), 0);
      s.reset(result !== 'written' ? 'audit_unavailable' : revoked ? revoked.reason : 'client_reset');
      return s.finish(o.recorder);
    }
    s.opened = true;
    let closedSockets = 0;
    const onSocketClosed = (): void => {
      if (++closedSockets === 2) {
        choice.release();
        s.finish(o.recorder);
      }
    };
    client.on('close', onSocketClosed);
    upstream.on('close', onSocketClosed);
    // A reset on one side resets the other; a FIN is passed on as a FIN (pipe ends the other side).
    client.on('error', () => s.reset('client_reset'));
    upstream.on('error', () => s.reset('upstream_reset'));
    if (o.idleTimeoutMs) {
      // Every byte either way is written to or read from the upstream socket, so its own idle
      // timer sees both directions (as the HBONE tunnel's, src/hbone/tunnel.ts).
      upstream.setTimeout(o.idleTimeoutMs);
      upstream.on('timeout', () => s.reset('idle_timeout'));
    }
    if (rest.length > 0) upstream.write(rest);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  return {
    get live() {
      return live.size;
    },
    listen() {
      return new Promise<AddressInfo>((resolve, reject) => {
        const onError = (err: Error): void => reject(new WaygateError('WG_CONFIG', `cannot listen on ${formatHostPort(o.host, o.port)} (sandwich.listen): ${err.message}`, { cause: err }));
        server.once('error', onError);
        server.listen(o.port, o.host, () => {
          server.removeListener('error', onError);
          server.on('error', (err) => log?.error({ err: err.message }, 'sandwich listener error'));
          resolve(server.address() as AddressInfo);
        });
      });
    },
    recheck(authorize) {
      let closed = 0;
      // As the HBONE tunnels' recheck (src/hbone/tunnel-registry.ts): a decision that throws closes too.
      for (const s of [...live]) {
        let d: Decision | null;
        try {
          d = authorize(s.context);
        } catch {
          d = null;
        }
        if (d && d.decision === 'allow') continue;
        s.revoke(d ? { reason: 'policy_changed', decision: d } : { reason: 'policy_changed' });
        closed++;
      }
      return closed;
    },
    async drain(deadlineMs) {
      closing = true;
      server.close();
      if (live.size > 0 || undecided.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => emptyWaiters.push(resolve)),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, deadlineMs);
          }),
        ]);
        clearTimeout(timer);
      }
      const remaining = live.size;
      for (const s of [...live]) s.revoke({ reason: 'draining' });
      for (const sock of undecided) sock.destroy();
      return { remaining };
    },
    async close() {
      closing = true;
      const done = new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
      for (const s of [...live]) s.revoke({ reason: 'session_closed' });
      for (const sock of undecided) sock.destroy();
      await done;
    },
  };
}

/** `waygate_sandwich_rejected_total{reason}` on the gateway's registry; returns the listener's `onRejected`. */
export function sandwichRejectedCounter(registry: Registry): (reason: SandwichRejection) => void {
  const counter = new Counter({
    name: 'waygate_sandwich_rejected_total',
    help: 'Streams on the sandwich listener closed before any decision, by reason (peer_not_allowed, header_timeout, closed_before_header, or the PROXY v2 header fault: bad_signature, bad_version, local_command, bad_command, bad_family, too_long, bad_addresses, bad_tlv, bad_identity).',
    labelNames: ['reason'],
    registers: [registry],
  });
  return (reason) => counter.inc({ reason });
}
