/**
 * `spiffe(string)`: a SPIFFE ID as a CEL value, parsed with the same code that reads peer
 * certificates (src/identity/spiffe.ts, SPIFFE-ID spec §2), so a policy can take an ID apart the
 * way the gateway does: `spiffe(source.principal).namespace() == "prod"`.
 */
import { EvaluationError, type Environment } from '@marcbachmann/cel-js';
import { parseSpiffeId, type SpiffeId } from '../../identity/spiffe.ts';

/** The CEL `waygate.SpiffeID` value. */
export class CelSpiffeId {
  readonly parsed: SpiffeId;
  constructor(parsed: SpiffeId) {
    this.parsed = parsed;
  }
  toString(): string {
    return this.parsed.id;
  }
}

export const SPIFFE_TYPE = 'waygate.SpiffeID';

/** Why `s` is not a SPIFFE ID, or null when it is one (used to validate literals at load). */
export function spiffeLiteralError(s: string): string | null {
  return parseSpiffeId(s) === null
    ? `"${s}" is not a SPIFFE ID (spiffe://<trust-domain>/<path>, lower-case trust domain, no empty, "." or ".." segments)`
    : null;
}

function toSpiffe(s: string): CelSpiffeId {
  const p = parseSpiffeId(s);
  // An empty principal (no identity) is an error too: `spiffe(source.principal)` on a plaintext
  // peer must not yield an ID whose parts compare equal to "" by accident.
  if (p === null) throw new EvaluationError(`spiffe: "${s}" is not a SPIFFE ID`);
  return new CelSpiffeId(p);
}

/** Registers `waygate.SpiffeID`, `spiffe()`, `isSpiffe()` and the accessors on `env`. */
export function registerSpiffeFunctions(env: Environment): void {
  env.registerType(SPIFFE_TYPE, { ctor: CelSpiffeId, fields: {} });
  const fn = (sig: string, handler: (...args: any[]) => unknown, description: string) =>
    env.registerFunction(sig, { handler, description });
  fn('isSpiffe(string): bool', (s: string) => parseSpiffeId(s) !== null, 'True when the string is a SPIFFE ID.');
  fn(`spiffe(string): ${SPIFFE_TYPE}`, toSpiffe, 'Parses a SPIFFE ID; an error when invalid or empty.');
  fn(`string(${SPIFFE_TYPE}): string`, (id: CelSpiffeId) => id.parsed.id, 'The full ID.');
  fn(`${SPIFFE_TYPE}.trustDomain(): string`, (id: CelSpiffeId) => id.parsed.trustDomain, 'The trust domain.');
  fn(`${SPIFFE_TYPE}.path(): string`, (id: CelSpiffeId) => id.parsed.path, 'The path without its leading "/".');
  fn(
    `${SPIFFE_TYPE}.namespace(): string`,
    (id: CelSpiffeId) => id.parsed.namespace,
    'Istio namespace (path ns/<ns>/sa/<sa>), "" otherwise.',
  );
  fn(
    `${SPIFFE_TYPE}.serviceAccount(): string`,
    (id: CelSpiffeId) => id.parsed.serviceAccount,
    'Istio service account (path ns/<ns>/sa/<sa>), "" otherwise.',
  );
  env.registerOperator(`${SPIFFE_TYPE} == ${SPIFFE_TYPE}`, (a: CelSpiffeId, b: CelSpiffeId) => a.parsed.id === b.parsed.id);
}
