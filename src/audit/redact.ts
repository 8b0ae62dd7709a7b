/**
 * Which request headers an audit record may carry, and how secrets are kept out of it
 * (docs/design.md §4 "Secrets"). Allow-listing comes first so an
 * unexpected header can never leak; redaction then masks allow-listed headers that still carry
 * credentials (an operator who allow-lists `authorization` to see that it was present gets
 * `[REDACTED]`, never the token).
 */

export interface HeaderAuditPolicy {
  /** Lower-case header names copied into audit records. */
  allow: readonly string[];
  /** Lower-case header names whose values are replaced by REDACTED even when allow-listed. */
  redact: readonly string[];
}

export const REDACTED = '[REDACTED]';

/** The default: the attribute headers ztunnel sends, nothing that can carry a credential. */
export const DEFAULT_HEADER_AUDIT_POLICY: HeaderAuditPolicy = Object.freeze({
  allow: Object.freeze(['baggage', 'forwarded', 'traceparent', 'tracestate', 'x-forwarded-network', 'user-agent']),
  redact: Object.freeze(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'x-auth-token']),
});

/** Returns the allow-listed subset of `headers`, with secret-bearing values redacted. */
export function selectAuditHeaders(
  headers: Readonly<Record<string, string>>,
  policy: HeaderAuditPolicy = DEFAULT_HEADER_AUDIT_POLICY,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of policy.allow) {
    const value = headers[name];
    if (value === undefined) continue;
    out[name] = policy.redact.includes(name) ? REDACTED : value;
  }
  return out;
}
