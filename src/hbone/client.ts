/**
 * An HBONE client: HTTP/2 CONNECT over mutual TLS, behaving on the wire like ztunnel's outbound
 * side (istio/ztunnel `proxy/outbound.rs`, `tls/`), so `waygate connect`, the benchmarks and the
 * integration tests exercise the gateway the way a mesh peer does:
 *
 * - TLS 1.3 only, ALPN `h2`, **no SNI** (ztunnel dials pod IPs and never sets a server name);
 * - the server chain is verified against the trust bundle, and the server's identity is an
 *   **exact URI SAN match** against the expected SPIFFE ID instead of a hostname check;
 * - 4 MiB stream window, 16 MiB connection window, 1 MiB frames (docs/design.md §8.2: small windows are slow,
 *   a connection window equal to the stream window can deadlock);
 * - each tunnel is one CONNECT stream with only `:method` and `:authority` (RFC 9113 §8.5).
 */
import { randomBytes } from 'node:crypto';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { isIPv6 } from 'node:net';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { WaygateError } from '../errors.ts';
import { checkSpiffeIdentity, identityFromCertificate, type PeerIdentity } from '../identity/peer-identity.ts';
import { forwardedFor } from '../upstream/hbone-headers.ts';

const MiB = 1024 * 1024;
/**
 * The client's (`waygate connect`, tests) HTTP/2 stream window: ztunnel's, as this client speaks
 * as ztunnel does. The listener's own default is LISTENER_STREAM_WINDOW_BYTES (h2-settings.ts).
 */
export const CLIENT_STREAM_WINDOW_BYTES = 4 * MiB;
/** The client's connection window: ztunnel's upper one (4x the stream window). */
export const CLIENT_CONNECTION_WINDOW_BYTES = 16 * MiB;
const DEFAULT_MAX_FRAME_BYTES = 1 * MiB;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Options of {@link connectHbone}. */
export interface HboneClientOptions {
  address: { host: string; port: number };
  /** Client certificate chain (PEM): the leaf whose first SPIFFE URI SAN is our identity, then intermediates. */
  cert: string | Buffer;
  key: string | Buffer;
  /** Trust anchors the server chain must verify against. */
  ca: string | Buffer;
  /** SNI to send; default none, as ztunnel. Setting it also makes it the name of the hostname check. */
  servername?: string;
  /**
   * The server's SPIFFE ID: its certificate must carry exactly this URI SAN (ztunnel's check), and
   * no hostname check is made. Without it the certificate must match `servername` or
   * `address.host` as in HTTPS (RFC 6125).
   */
  expectedServerSpiffeId?: string;
  /** HTTP/2 SETTINGS to send, merged over the ztunnel-like defaults. */
  settings?: http2.Settings;
  /** Connection-level receive window; default 16 MiB. */
  connectionWindowBytes?: number;
  /** TCP connect + TLS handshake + HTTP/2 preface; default 10 s. */
  connectTimeoutMs?: number;
}

/** An open CONNECT tunnel, or the refusal of one. */
export interface HboneTunnel {
  /** The response `:status`: 200 means the tunnel is open; anything else means refused (the stream is closed). */
  status: number;
  /** The tunnel's byte stream (a Duplex): write to send, read to receive, `end()` to half-close. */
  stream: ClientHttp2Stream;
  /** Response headers, pseudo-headers included. */
  headers: IncomingHttpHeaders;
}

/** A TLS + HTTP/2 connection to an HBONE server that opens tunnels. */
export interface HboneClientSession {
  /** Sends `CONNECT authority` with `headers`; resolves when the response headers arrive. */
  openTunnel(authority: string, headers?: Record<string, string>): Promise<HboneTunnel>;
  /** Closes gracefully (GOAWAY; open tunnels finish first). */
  close(): Promise<void>;
  /** Tears the connection down now, resetting every tunnel. */
  destroy(): void;
  /** The underlying HTTP/2 session (for tests that look at SETTINGS, GOAWAY, PING). */
  readonly session: ClientHttp2Session;
  /** Identity of the server from its certificate. */
  readonly serverIdentity: PeerIdentity;
  /** Negotiated TLS version (`TLSv1.3`). */
  readonly tlsVersion: string | null;
}

/** Connects to an HBONE server: TLS 1.3 mTLS, ALPN h2, no SNI, large windows. */
export function connectHbone(opts: HboneClientOptions): Promise<HboneClientSession> {
  const { host, port } = opts.address;
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const authorityHost = isIPv6(host) ? `[${host}]` : host;
  const where = `${authorityHost}:${port}`;
  const expected = opts.expectedServerSpiffeId;
  const hostnameForCheck = opts.servername || host;

  return new Promise<HboneClientSession>((resolve, reject) => {
    let settled = false;
    let socket: TLSSocket | undefined;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      socket?.destroy();
      reject(asConnectError(err, where));
    };
    const timer = setTimeout(
      () => fail(new WaygateError('WG_UPSTREAM_TIMEOUT', `HBONE connect to ${where} timed out after ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    timer.unref();

    const settings: http2.Settings = {
      enablePush: false,
      initialWindowSize: CLIENT_STREAM_WINDOW_BYTES,
      maxFrameSize: DEFAULT_MAX_FRAME_BYTES,
      ...opts.settings,
    };
    const session = http2.connect(`https://${where}`, {
      settings,
      // Large windows let a busy session buffer more than the 10 MB default allows (docs/design.md §8.2).
      maxSessionMemory: 64,
      createConnection: () => {
        const tlsOpts: tls.ConnectionOptions = {
          host,
          port,
          cert: opts.cert,
          key: opts.key,
          ca: opts.ca,
          ALPNProtocols: ['h2'],
          minVersion: 'TLSv1.3',
          maxVersion: 'TLSv1.3',
          rejectUnauthorized: true,
          // An empty servername makes Node send no SNI extension (ztunnel sends none).
          servername: opts.servername ?? '',
          checkServerIdentity: expected
            ? (_name, cert) => checkSpiffeIdentity(expected, cert)
            : (_name, cert) => tls.checkServerIdentity(hostnameForCheck, cert),
        };
        socket = tls.connect(tlsOpts);
        socket.setNoDelay(true);
        return socket;
      },
    });
    session.once('error', fail);
    session.once('close', () => fail(new WaygateError('WG_UPSTREAM_CONNECT', `HBONE connection to ${where} closed during setup`)));
    session.once('connect', (s: ClientHttp2Session, sock: TLSSocket) => {
      if (settled) return;
      if (sock.alpnProtocol !== 'h2') {
        fail(new WaygateError('WG_UPSTREAM_CONNECT', `HBONE server ${where} did not negotiate ALPN h2 (got ${String(sock.alpnProtocol)})`));
        return;
      }
      let serverIdentity: PeerIdentity;
      try {
        serverIdentity = identityFromCertificate(sock.getPeerCertificate(false).raw);
      } catch (err) {
        fail(err);
        return;
      }
      s.setLocalWindowSize(opts.connectionWindowBytes ?? CLIENT_CONNECTION_WINDOW_BYTES);
      settled = true;
      clearTimeout(timer);
      session.removeListener('error', fail);
      // After setup, session errors surface through the streams (and close()); keep one listener
      // so an error on an idle session cannot crash the process.
      session.on('error', () => {});
      resolve(makeClientSession(s, serverIdentity, sock.getProtocol()));
    });
  });
}

function asConnectError(err: unknown, where: string): WaygateError {
  if (err instanceof WaygateError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ? ` (${e.code})` : '';
  const certCodes = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY']);
  return new WaygateError(
    e?.code && certCodes.has(e.code) ? 'WG_CERT' : 'WG_UPSTREAM_CONNECT',
    `HBONE connect to ${where} failed: ${e?.message ?? String(err)}${code}`,
    { cause: err },
  );
}

function makeClientSession(session: ClientHttp2Session, serverIdentity: PeerIdentity, tlsVersion: string | null): HboneClientSession {
  return {
    session,
    serverIdentity,
    tlsVersion,
    openTunnel(authority: string, headers: Record<string, string> = {}): Promise<HboneTunnel> {
      return new Promise<HboneTunnel>((resolve, reject) => {
        if (session.closed || session.destroyed) {
          reject(new WaygateError('WG_UPSTREAM_CONNECT', 'the HBONE session is closed'));
          return;
        }
        // RFC 9113 §8.5: CONNECT carries :method and :authority only; Node omits :scheme/:path for it.
        let stream: ClientHttp2Stream;
        try {
          stream = session.request({ ...headers, ':method': 'CONNECT', ':authority': authority }, { endStream: false });
        } catch (err) {
          reject(new WaygateError('WG_UPSTREAM_CONNECT', `cannot open CONNECT ${authority}: ${(err as Error).message}`, { cause: err }));
          return;
        }
        let answered = false;
        const onError = (err: Error): void => {
          if (answered) return;
          answered = true;
          reject(new WaygateError('WG_UPSTREAM_CONNECT', `CONNECT ${authority} failed before a response: ${err.message}`, { cause: err }));
        };
        stream.once('error', onError);
        stream.once('close', () => {
          if (answered) return;
          answered = true;
          reject(new WaygateError('WG_UPSTREAM_CONNECT', `CONNECT ${authority} was reset before a response (RST_STREAM code ${stream.rstCode ?? 'none'})`));
        });
        stream.once('response', (resHeaders) => {
          if (answered) return;
          answered = true;
          stream.removeListener('error', onError);
          const status = Number(resHeaders[':status']);
          if (status !== 200) {
            // A refused tunnel is finished: the server ended its side, we end ours with END_STREAM
            // (ztunnel resets the application connection on any non-200). Not RST_STREAM: Node's
            // nghttp2 answers a burst of ~1,000 stream resets on one connection with
            // GOAWAY(INTERNAL_ERROR) (rapid-reset mitigation), which would take every other tunnel
            // of the connection down with it.
            stream.on('error', () => {});
            stream.resume();
            stream.end();
          }
          resolve({ status, stream, headers: resHeaders });
        });
      });
    },
    close(): Promise<void> {
      return new Promise<void>((resolve) => {
        if (session.destroyed) return resolve();
        session.close(() => resolve());
      });
    },
    destroy(): void {
      session.destroy();
    },
  };
}

/** Inputs of {@link ztunnelHeaders}: what ztunnel knows about the source workload. */
export interface ZtunnelHeaderInput {
  /** The application's source address and port (`forwarded: for=`). */
  srcIp: string;
  srcPort: number;
  namespace?: string;
  /** Workload (deployment) name. */
  workload?: string;
  /** Kind of workload in the baggage key `k8s.<type>.name`; default `deployment`. */
  workloadType?: string;
  /** Canonical service name (`service.name`). */
  service?: string;
  serviceVersion?: string;
  cluster?: string;
  /** Destination service host, sent as `forwarded: ...;host=<svc>`. */
  host?: string;
  /** 32 lower-case hex digits; random when omitted. */
  traceId?: string;
  /** 16 lower-case hex digits; random when omitted. */
  spanId?: string;
}

/**
 * The headers ztunnel adds to a CONNECT (docs/design.md §8.3, istio/ztunnel `proxy/outbound.rs` and
 * `baggage.rs`): W3C `baggage` without spaces, RFC 7239 `forwarded` with a quoted `for`, and a W3C
 * `traceparent` with flags 00 (not sampled).
 */
export function ztunnelHeaders(input: ZtunnelHeaderInput): Record<string, string> {
  const baggage: string[] = [];
  const add = (k: string, v: string | undefined): void => {
    if (v) baggage.push(`${k}=${encodeURIComponent(v)}`);
  };
  add('k8s.cluster.name', input.cluster ?? 'Kubernetes');
  add('k8s.namespace.name', input.namespace);
  add(`k8s.${input.workloadType ?? 'deployment'}.name`, input.workload);
  add('service.name', input.service);
  add('service.version', input.serviceVersion);
  // RFC 7239 §6: an IPv6 node is bracketed, and a node with a port must be quoted.
  const forwarded = forwardedFor(input.srcIp, input.srcPort, input.host);
  const traceId = input.traceId ?? randomNonZeroHex(16);
  const spanId = input.spanId ?? randomNonZeroHex(8);
  const headers: Record<string, string> = { forwarded, traceparent: `00-${traceId}-${spanId}-00` };
  if (baggage.length > 0) headers.baggage = baggage.join(',');
  return headers;
}

/** W3C Trace Context §3.2.2.3: an all-zero trace-id or parent-id is invalid. */
function randomNonZeroHex(bytes: number): string {
  for (;;) {
    const hex = randomBytes(bytes).toString('hex');
    if (!/^0+$/.test(hex)) return hex;
  }
}
