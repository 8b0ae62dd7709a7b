/**
 * The attribute catalogue: every value a policy may read about one tunnel, and, for each, what
 * the rest of waygate needs to know about it. Adding a policy attribute means adding an entry here
 * and filling the fact it reads (ConnectionFacts / StreamFacts below); everything else derives
 * from this file (docs/architecture.md, "Adding a policy attribute"):
 *
 * - the DecisionContext type and its empty value (context.ts), and the transport's builders;
 * - the CEL environment: one message type per group, the field types (cel/environment.ts);
 * - the cost model's size bound of each attribute (cel/limits.ts);
 * - which attributes the decision cache may key on, and why not the others (decision-cache.ts);
 * - which attributes the rule index may key on, and how (cel/compiled.ts, rule-index.ts);
 * - the PolicyTest `input` fields, their YAML and JSON parsers (documents.ts, context-input.ts),
 *   the formatter's key order (fmt.ts) and the JSON Schemas (schema/, `npm run schema`);
 * - where a decision record holds each value and how `audit replay` reads it back (audit/record.ts,
 *   context-input.ts), and the record's CEL types for `audit query` (audit/review/record-cel.ts);
 * - the variable table in docs/writing-policies.md.
 *
 * This file is data and types only: the tables above are derived in attribute-tables.ts, once,
 * when the modules load, never per CONNECT.
 */
import type { TLSSocket } from 'node:tls';

/**
 * What an attribute holds. The format fixes the CEL type, the value's JavaScript type in a
 * DecisionContext, its empty value, how a PolicyTest input and an audit record spell it, and which
 * checks apply to literals compared with it.
 */
export type AttributeFormat =
  /** Text (CEL `string`), `""` when absent. */
  | 'string'
  /** Text that inputs lower-case (host names, trace ids), as the transport does. */
  | 'lowercase'
  /** A SPIFFE ID (spiffe://<trust-domain>/<path>) or `""` (no identity). */
  | 'spiffe-id'
  /** An IPv4 or IPv6 address in canonical text (IPv4-mapped IPv6 as IPv4, RFC 5952), `""` for none. */
  | 'ip'
  /** A TCP port, 0-65535: a CEL `int` (a BigInt in the activation, a number everywhere else). */
  | 'port'
  /** HTTP header fields: lower-case names (RFC 9113 §8.2.1), repeated values joined by ", ". */
  | 'header-map'
  /** A map of strings. */
  | 'string-map'
  /** A point in time: a CEL `google.protobuf.Timestamp`, RFC 3339 text in inputs and records. */
  | 'timestamp';

/** The JavaScript value of each format in a DecisionContext. */
export interface FormatValue {
  string: string;
  lowercase: string;
  'spiffe-id': string;
  ip: string;
  port: number;
  'header-map': Readonly<Record<string, string>>;
  'string-map': Readonly<Record<string, string>>;
  timestamp: Date;
}

/** The JavaScript value of each format in a PolicyTest input (and an `eval`/explain body). */
export interface FormatInput {
  string: string;
  lowercase: string;
  'spiffe-id': string;
  ip: string;
  port: number;
  'header-map': Record<string, string>;
  'string-map': Record<string, string>;
  timestamp: string;
}

/**
 * The kinds of rule-index key (cel/compiled.ts IndexKey): `equals` (a hash map), `cidr` (address
 * attributes), `prefix` / `suffix` (string attributes).
 */
export type IndexKeyKind = 'equals' | 'cidr' | 'prefix' | 'suffix';

/** The parts of a SPIFFE ID an attribute can derive from another (identity/spiffe.ts). */
export type SpiffePart = 'trustDomain' | 'namespace' | 'serviceAccount';

/**
 * What the transport knows about one HTTP/2 connection once its TLS handshake is done. Attributes
 * of a `connection` scoped group read it once per connection, not once per CONNECT.
 */
export interface ConnectionFacts {
  /** Gateway-assigned id of the connection. */
  readonly id: string;
  /** The connection's TLS socket; read only (its owner is the HBONE server). */
  readonly tls: TLSSocket;
  /** The verified SPIFFE identity of the peer, null without one. */
  readonly identity: { readonly principal: string } & { readonly [P in SpiffePart]: string } | null;
  /** The socket's peer address (canonical text, never a header's) and port. */
  readonly peer: { readonly ip: string; readonly port: number };
}

/** What the transport knows about one CONNECT when it decides it. */
export interface StreamFacts {
  /** The CONNECT `:authority` exactly as received. */
  readonly authority: string;
  /**
   * Where the authority leads: the address it names or its route's (`""` for a host without a
   * route), its host name, its port; and what discovery knows of it (src/discovery/), `""`
   * outside the mesh: the service and its namespace (service-level, known before an endpoint is
   * picked), the workload and its SPIFFE ID (only when the authority names a workload's address).
   */
  readonly target: {
    readonly ip: string;
    readonly host: string;
    readonly port: number;
    readonly service: string;
    readonly namespace: string;
    readonly workload: string;
    readonly principal: string;
  };
  /** The CONNECT's informational headers, parsed (hbone/request-headers.ts). */
  readonly request: {
    readonly headers: Readonly<Record<string, string>>;
    readonly baggage: Readonly<Record<string, string>>;
    readonly traceId: string;
  };
  /** The decision time. */
  readonly now: Date;
}

/** When the transport reads a group: once per connection, or for every CONNECT. */
export type AttributeScope = 'connection' | 'stream';

/** The facts an attribute of a group of that scope reads. */
export interface ScopeFacts {
  connection: ConnectionFacts;
  stream: StreamFacts;
}

/** One attribute: everything waygate needs to know about it. */
export interface AttributeDef<F = ConnectionFacts | StreamFacts> {
  readonly format: AttributeFormat;
  /** What it holds, for people (docs/writing-policies.md, the JSON Schemas). Markdown, one or two sentences. */
  readonly doc: string;
  /**
   * Strings: the longest value it can hold, for the load-time cost model (cel/limits.ts). `ip`
   * and `spiffe-id` have their own (45 and 2,048, SPIFFE-ID §2.3); other formats need none.
   */
  readonly maxLength?: number;
  /**
   * `true` when the decision cache may key on it; otherwise why not (a value that differs for
   * nearly every tunnel: a key holding it would never be hit again). For a map, about reading the
   * whole map; a constant-key read (`request.headers["x"]`) is always keyed.
   */
  readonly cache: true | string;
  /**
   * The rule index may file a rule under a conjunct on it: which kinds of key (rule-index.ts), and
   * its rank among equally selective keys (lower is preferred). Absent: never indexed.
   */
  readonly index?: { readonly kinds: readonly IndexKeyKind[]; readonly rank: number };
  /**
   * A value derived from a SPIFFE ID attribute of the same group: not a PolicyTest input field and
   * not read back from a record (both derive it again).
   */
  readonly derive?: { readonly from: string; readonly part: SpiffePart };
  /** `port` inputs: the smallest port a PolicyTest input may state (a destination port cannot be 0). */
  readonly minPort?: number;
  /** A record field read back when a record lacks the attribute's own field (older records). */
  readonly recordFallback?: string;
  /** How the transport reads it. */
  readonly read: (facts: F) => unknown;
}

/** A group of attributes: one CEL message type (`source.principal` is field `principal` of `waygate.Source`). */
export interface GroupDef<S extends AttributeScope = AttributeScope> {
  /** CEL message type name. */
  readonly celType: string;
  readonly description: string;
  readonly scope: S;
  /**
   * How a decision record holds the group: `nested` as an object under the group's name
   * (`source.principal` at `source.principal`), `flat` as top-level fields (`request.traceId` at
   * `traceId`). `header-map` values are written through the gateway's audit header policy.
   */
  readonly record: 'nested' | 'flat';
  readonly attributes: Readonly<Record<string, AttributeDef<ScopeFacts[S]>>>;
}

function group<const G extends GroupDef<'connection'> | GroupDef<'stream'>>(g: G): G {
  return g;
}

/** The largest CONNECT header list (SETTINGS_MAX_HEADER_LIST_SIZE default): bounds every header-derived string. */
export const MAX_HEADER_LIST_BYTES = 64 * 1024;

const SOURCE_INDEX = ['equals', 'prefix', 'suffix'] as const;

/**
 * The groups, in the order the context, the CEL environment, inputs and records list them; within a
 * group, the attributes in that order too.
 */
export const ATTRIBUTE_GROUPS = {
  source: group({
    celType: 'waygate.Source',
    description: 'The verified peer: SPIFFE ID and its parts ("" without identity), socket address.',
    scope: 'connection',
    record: 'nested',
    attributes: {
      principal: {
        format: 'spiffe-id',
        doc: "The peer's SPIFFE ID: the first URI SAN of its verified certificate that parses as one, e.g. `spiffe://cluster.local/ns/prod/sa/frontend`. `\"\"` without identity.",
        cache: true,
        index: { kinds: SOURCE_INDEX, rank: 0 },
        read: (c: ConnectionFacts) => c.identity?.principal ?? '',
      },
      trustDomain: {
        format: 'string',
        doc: '`cluster.local` in the ID above.',
        maxLength: 255, // SPIFFE-ID §2.3
        // Derived from the principal, but keying on it is cheap and keeps the key correct for hand-built contexts.
        cache: true,
        index: { kinds: SOURCE_INDEX, rank: 3 },
        derive: { from: 'principal', part: 'trustDomain' },
        read: (c: ConnectionFacts) => c.identity?.trustDomain ?? '',
      },
      namespace: {
        format: 'string',
        doc: '`prod` (from Istio\'s `ns/<ns>/sa/<sa>` path; `""` for other paths).',
        maxLength: 2048,
        cache: true,
        index: { kinds: SOURCE_INDEX, rank: 1 },
        derive: { from: 'principal', part: 'namespace' },
        read: (c: ConnectionFacts) => c.identity?.namespace ?? '',
      },
      serviceAccount: {
        format: 'string',
        doc: '`frontend`.',
        maxLength: 2048,
        cache: true,
        index: { kinds: SOURCE_INDEX, rank: 2 },
        derive: { from: 'principal', part: 'serviceAccount' },
        read: (c: ConnectionFacts) => c.identity?.serviceAccount ?? '',
      },
      ip: {
        format: 'ip',
        doc: "The socket's peer address (never a header's); IPv4-mapped IPv6 is written as IPv4.",
        cache: true,
        index: { kinds: ['equals', 'cidr'], rank: 4 },
        read: (c: ConnectionFacts) => c.peer.ip,
      },
      port: {
        format: 'port',
        doc: "The socket's peer port.",
        cache: 'an ephemeral port, unique per client connection',
        read: (c: ConnectionFacts) => c.peer.port,
      },
    },
  }),
  destination: group({
    celType: 'waygate.Destination',
    description: 'Where the tunnel goes: the CONNECT :authority, its parts, and what discovery knows of it.',
    scope: 'stream',
    record: 'nested',
    attributes: {
      ip: {
        format: 'ip',
        doc: 'The address to be dialed; `""` for a `host:port` authority before routing.',
        cache: true,
        index: { kinds: ['equals', 'cidr'], rank: 6 },
        read: (s: StreamFacts) => s.target.ip,
      },
      host: {
        format: 'lowercase',
        doc: 'Host of a `host:port` authority (lower case), `""` for `ip:port`.',
        maxLength: MAX_HEADER_LIST_BYTES,
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 7 },
        read: (s: StreamFacts) => s.target.host,
      },
      port: {
        format: 'port',
        doc: 'The CONNECT port.',
        cache: true,
        index: { kinds: ['equals'], rank: 5 },
        minPort: 1,
        read: (s: StreamFacts) => s.target.port,
      },
      authority: {
        format: 'string',
        doc: 'The CONNECT `:authority` exactly as received.',
        maxLength: MAX_HEADER_LIST_BYTES,
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 8 },
        read: (s: StreamFacts) => s.authority,
      },
      service: {
        format: 'lowercase',
        doc: 'With discovery: the hostname of the service the authority names (its VIP or its hostname), e.g. `echo.shop.svc.cluster.local`; `""` otherwise. Known before an endpoint is picked.',
        maxLength: 253, // a DNS name (RFC 1035 §2.3.4)
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 9 },
        read: (s: StreamFacts) => s.target.service,
      },
      namespace: {
        format: 'string',
        doc: 'With discovery: the namespace of that service, or of the workload a workload address names; `""` otherwise.',
        maxLength: 63, // a Kubernetes namespace is a DNS label
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 10 },
        read: (s: StreamFacts) => s.target.namespace,
      },
      workload: {
        format: 'string',
        doc: 'With discovery, for an authority naming a workload\'s own address: its name. `""` for service traffic (the verdict never depends on the endpoint the balancer picks) and outside the mesh.',
        maxLength: 253,
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 11 },
        read: (s: StreamFacts) => s.target.workload,
      },
      principal: {
        format: 'spiffe-id',
        doc: 'The SPIFFE ID of that workload (what its ztunnel must present); `""` like `workload`.',
        cache: true,
        index: { kinds: ['equals', 'prefix', 'suffix'], rank: 12 },
        read: (s: StreamFacts) => s.target.principal,
      },
    },
  }),
  request: group({
    celType: 'waygate.Request',
    description: 'CONNECT headers (lower-case names), W3C baggage members, W3C trace id.',
    scope: 'stream',
    record: 'flat',
    attributes: {
      headers: {
        format: 'header-map',
        doc: 'Every CONNECT header except pseudo-headers; lower-case names; repeated values joined by `, `. Untrusted, informational.',
        cache: 'the key would hold every header, including per-request ones such as traceparent',
        read: (s: StreamFacts) => s.request.headers,
      },
      baggage: {
        format: 'string-map',
        doc: 'W3C baggage members (ztunnel sends `k8s.namespace.name`, `service.name`, ...). Untrusted.',
        cache: 'it carries per-request members',
        read: (s: StreamFacts) => s.request.baggage,
      },
      traceId: {
        format: 'lowercase',
        doc: 'The W3C `traceparent` trace id (32 lower-case hex), `""` when absent or malformed.',
        maxLength: 32, // W3C Trace Context §3.2.2.3
        cache: 'unique per request',
        read: (s: StreamFacts) => s.request.traceId,
      },
    },
  }),
  connection: group({
    celType: 'waygate.Connection',
    description: 'The HTTP/2 connection carrying the tunnel.',
    scope: 'connection',
    record: 'nested',
    attributes: {
      id: {
        format: 'string',
        doc: "The gateway's id of the HTTP/2 connection carrying the tunnel.",
        maxLength: 256,
        cache: 'unique per HTTP/2 connection',
        recordFallback: 'connectionId',
        read: (c: ConnectionFacts) => c.id,
      },
      tlsVersion: {
        format: 'string',
        doc: 'The negotiated TLS version, e.g. `TLSv1.3`.',
        maxLength: 16,
        cache: true,
        read: (c: ConnectionFacts) => c.tls.getProtocol?.() ?? '',
      },
    },
  }),
} as const;

/**
 * Attributes outside any group (a top-level CEL variable each). `record` names the decision record
 * field that holds it.
 */
export const TOP_LEVEL_ATTRIBUTES = {
  now: {
    format: 'timestamp',
    doc: 'The decision time (a CEL timestamp; millisecond precision).',
    cache: 'the decision time differs for every tunnel',
    record: 'time',
    read: (s: StreamFacts) => s.now,
  },
} as const satisfies Readonly<Record<string, AttributeDef<StreamFacts> & { readonly record: string }>>;
