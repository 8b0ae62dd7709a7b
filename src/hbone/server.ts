/**
 * The HBONE data plane (docs/design.md §1-2): mutual TLS 1.3 with ALPN `h2`, HTTP/2 CONNECT streams,
 * one decision per CONNECT, then dial and pipe. Real ztunnel peers interoperate unchanged.
 * docs/architecture.md draws the layers; this file composes them:
 *
 * - server-options.ts   every option validated once, defaults filled in;
 * - session.ts          the TLS + HTTP/2 connections: identity, preface, PING, graceful GOAWAY, limits;
 * - connect-handler.ts  one CONNECT in phases, each ending in a typed outcome (connect-outcome.ts),
 *                       its decision record written in one place (records.ts);
 * - ../upstream/       how an allowed tunnel reaches its destination (connector.ts; connectors
 *                       tcp.ts, proxy-v2.ts), admitted per connection by dial-queue.ts;
 * - tunnel.ts           the open tunnel: pipe, half-close, resets; tunnel-registry.ts for recheck and drain.
 *
 * Certificates that do not verify (unknown CA, expired) are refused in the handshake itself
 * (`rejectUnauthorized`), counted as handshake failures (session.ts).
 */
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { WaygateError } from '../errors.ts';
import { ConnectHandler } from './connect-handler.ts';
import { h2Settings } from './h2-settings.ts';
import { ConnectRecorder } from './records.ts';
import { resolveServerOptions, tlsOptions, type HboneServerOptions, type HboneTlsOptions } from './server-options.ts';
import { HboneSessions } from './session.ts';
import { TunnelRegistry, type Authorize } from './tunnel-registry.ts';

export type { HboneServerOptions, HboneTlsOptions } from './server-options.ts';

/** The running server. */
export interface HboneServer {
  listen(): Promise<AddressInfo>;
  address(): AddressInfo | null;
  /** New handshakes use the new certificate/key/trust bundle; live connections keep theirs. */
  setSecureContext(tls: HboneTlsOptions): void;
  readonly tunnels: TunnelRegistry;
  /**
   * Re-decides every live tunnel (open, or still dialing) with its original context. Open tunnels
   * now denied get RST_STREAM(CANCEL) and a `policy_changed` close record; dialing ones are
   * answered with the deny status. Returns how many were closed. Does not replace `authorize`.
   */
  recheck(authorize: Authorize): number;
  /**
   * Graceful GOAWAY on every connection (GOAWAY(2^31-1) + PING, then the final GOAWAY once the
   * PING is acked), wait up to `deadlineMs` for the tunnels to finish, then reset what is left.
   */
  drain(deadlineMs: number): Promise<{ remaining: number }>;
  close(): Promise<void>;
}

/** Creates (does not start) an HBONE server. Throws `WG_CONFIG` naming the first bad option. */
export function createHboneServer(opts: HboneServerOptions): HboneServer {
  const o = resolveServerOptions(opts);
  const log = o.log;
  const registry = new TunnelRegistry();
  const recorder = new ConnectRecorder({ audit: o.audit, observer: o.observer, log, headerAuditPolicy: o.headerAuditPolicy, snapshotInfo: o.snapshotInfo });
  const handler = new ConnectHandler(o, registry, recorder);
  const server: Http2SecureServer = createSecureServer({
    ...o.tls,
    // Client certificate required and verified against the bundle (intermediates the client
    // sends are used to build the chain). No SNICallback: SNI is never relied upon.
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2'],
    allowHTTP1: false,
    handshakeTimeout: o.handshakeTimeoutMs,
    unknownProtocolTimeout: o.handshakeTimeoutMs,
    settings: h2Settings(o.h2),
    maxSessionMemory: o.h2.maxSessionMemoryMb,
    peerMaxConcurrentStreams: o.h2.maxConcurrentStreams,
  });
  const sessions = new HboneSessions(
    server,
    {
      h2: o.h2,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      acceptedTrustDomains: o.acceptedTrustDomains,
      maxPendingDials: o.maxPendingDials,
      connectTimeoutMs: o.connectTimeoutMs,
      maxConnections: o.maxConnections,
      observer: o.observer,
      log,
    },
    handler.serve,
  );
  let closed = false;
  let listening = false;

  return {
    tunnels: registry,

    listen() {
      if (listening) return Promise.reject(new WaygateError('WG_CONFIG', 'listen(): already listening'));
      listening = true;
      return new Promise<AddressInfo>((resolve, reject) => {
        const onError = (err: Error): void => reject(new WaygateError('WG_CONFIG', `cannot listen on ${o.host}:${o.port}: ${err.message}`, { cause: err }));
        server.once('error', onError);
        server.listen(o.port, o.host, () => {
          server.removeListener('error', onError);
          server.on('error', (err) => log?.error({ err: err.message }, 'HBONE listener error'));
          const addr = server.address() as AddressInfo;
          o.destinations.addOwnPort(addr.port);
          resolve(addr);
        });
      });
    },

    address() {
      const a = server.address();
      return a && typeof a === 'object' ? a : null;
    },

    setSecureContext(t: HboneTlsOptions) {
      server.setSecureContext({ ...tlsOptions(t) });
    },

    recheck(fn: Authorize) {
      if (typeof fn !== 'function') throw new WaygateError('WG_CONFIG', 'recheck: expected a function (ctx) => Decision');
      return registry.recheck(fn);
    },

    async drain(deadlineMs: number) {
      if (!Number.isFinite(deadlineMs) || deadlineMs < 0) throw new WaygateError('WG_CONFIG', `drain: deadlineMs must be >= 0, got ${deadlineMs}`);
      // Stop accepting connections; the open ones get the graceful GOAWAY (session.ts).
      sessions.stopListening();
      const finalGoaways = sessions.goawayAll();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        // Every final GOAWAY first (no stream can start after it), then every tunnel gone.
        finalGoaways.then(() => registry.whenEmpty()),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      handler.closing = true;
      // Deadline: the final GOAWAY goes out now where a PING ack has not sent it yet.
      sessions.finishDrains();
      const remaining = registry.revokeAll('draining');
      return { remaining };
    },

    async close() {
      if (closed) return;
      closed = true;
      handler.closing = true;
      sessions.stop();
      registry.revokeAll('session_closed');
      const done = new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      });
      sessions.destroyAll();
      await done;
    },
  };
}
