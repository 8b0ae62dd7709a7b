/**
 * The decision context: everything a policy may read about one tunnel (DESIGN §3 "CEL
 * environment"). Transport builds it from the socket, the peer certificate and the CONNECT
 * headers; `policy eval`, `policy test` and `audit replay` build it from YAML/JSON. The engine
 * reads nothing else, which is what makes a recorded decision replayable.
 *
 * Ports are plain numbers here; the engine converts them to CEL `int` (BigInt) once per decision
 * because the CEL engine refuses mixed int/double comparisons (FACTS.md).
 */

export interface SourceAttributes {
  /** Full SPIFFE ID of the verified peer, `""` when there is none. */
  principal: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  /** Always the socket's address (never a header's); IPv4-mapped IPv6 canonicalised to IPv4. */
  ip: string;
  port: number;
}

export interface DestinationAttributes {
  /** Address that will be dialed; `""` for a `host:port` authority before routing. */
  ip: string;
  /** Host part of a `host:port` authority, `""` for an `ip:port` one. */
  host: string;
  port: number;
  /** The CONNECT `:authority` exactly as received. */
  authority: string;
}

export interface RequestAttributes {
  /** Every CONNECT header except pseudo-headers, lower-case names, repeated values joined by ", ". */
  headers: Readonly<Record<string, string>>;
  /** W3C baggage members (key -> decoded value). */
  baggage: Readonly<Record<string, string>>;
  /** W3C traceparent trace-id (32 lower-case hex), `""` when absent or malformed. */
  traceId: string;
}

export interface ConnectionAttributes {
  /** Gateway-assigned id of the HTTP/2 connection carrying the tunnel. */
  id: string;
  /** Negotiated TLS version as Node reports it, e.g. `TLSv1.3`; `""` when unknown. */
  tlsVersion: string;
}

/** The full, immutable input of one decision. */
export interface DecisionContext {
  readonly source: Readonly<SourceAttributes>;
  readonly destination: Readonly<DestinationAttributes>;
  readonly request: Readonly<RequestAttributes>;
  readonly connection: Readonly<ConnectionAttributes>;
  /** Decision time, passed in (the engine never reads a clock). */
  readonly now: Date;
}

/** The no-identity / empty value of every attribute (DESIGN §3 "Types", policy test inputs). */
export function emptyContext(now: Date = new Date(0)): DecisionContext {
  return {
    source: { principal: '', trustDomain: '', namespace: '', serviceAccount: '', ip: '', port: 0 },
    destination: { ip: '', host: '', port: 0, authority: '' },
    request: { headers: {}, baggage: {}, traceId: '' },
    connection: { id: '', tlsVersion: '' },
    now,
  };
}
