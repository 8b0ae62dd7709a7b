/**
 * Typed errors with stable codes (the undici pattern: callers branch on `code`, never on the
 * message). Messages say what went wrong and what a person can do about it.
 */

/** Every stable error code waygate emits. Codes are an API: add, never rename. */
export type ErrorCode =
  // policy loading
  | 'WG_POLICY_YAML'          // the file is not valid YAML
  | 'WG_POLICY_SCHEMA'        // a field is unknown, missing, of the wrong type, or duplicated
  | 'WG_POLICY_CEL'           // a CEL expression fails to parse or type-check
  | 'WG_POLICY_LIMIT'         // an expression exceeds its size/nesting bound, or the set its bytes/rules
  | 'WG_POLICY_FORBIDDEN'     // a construct is refused (e.g. backtracking `matches()`)
  | 'WG_POLICY_IO'            // a policy path cannot be read
  | 'WG_POLICY_EMPTY'         // a file holds no document, or ends in an empty one (a torn write?)
  | 'WG_POLICY_UNSTABLE'      // a file kept changing while it was read (a write in progress)
  | 'WG_POLICY_UNSAFE_UPDATE' // (warning) the directory is edited in place, e.g. editor swap files
  // policy evaluation (never thrown out of the engine: recorded as eval_error)
  | 'WG_EVAL'
  // configuration and CLI
  | 'WG_CONFIG'
  | 'WG_MESH'                 // a mesh file (discovery) is invalid: unknown field, bad address, dangling endpoint
  | 'WG_IMPORT_INPUT'         // `policy import`: an input file cannot be read or is not a policy of the source kind
  | 'WG_IMPORT_REFUSED'       // `policy import`: a field cannot be translated faithfully (HTTP fields, CUSTOM, ...)
  | 'WG_KUBE'                 // the Kubernetes API cannot be reached or refused a call (credentials, RBAC, kubeconfig)
  | 'WG_USAGE'
  // identity and TLS
  | 'WG_CERT'
  | 'WG_IDENTITY'
  | 'WG_CA'                   // the mesh CA (istiod) refused or failed a certificate request, or issued one that fails verification
  // transport
  | 'WG_BAD_REQUEST'
  | 'WG_UPSTREAM_CONNECT'
  | 'WG_UPSTREAM_TIMEOUT'
  | 'WG_UPSTREAM_DENIED'      // the destination answered the gateway's CONNECT 401/403 (its own policy)
  | 'WG_DESTINATION_NOT_ALLOWED'
  | 'WG_AUDIT';

/** A position in a source file, 1-based like every editor. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** Base class of every error waygate raises on purpose. */
export class WaygateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WaygateError';
    this.code = code;
  }
}

/** One problem found in a policy or config file, located to file:line:col and a field path. */
export interface Diagnostic {
  code: ErrorCode;
  message: string;
  file: string;
  line: number;
  col: number;
  /** Field path inside the document, e.g. `spec.rules[2].when`. */
  path: string;
  severity: 'error' | 'warning';
}

/** Formats a diagnostic the way compilers do, so editors and CI annotate the right line. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity} ${d.code} at ${d.path || '<document>'}: ${d.message}`;
}
