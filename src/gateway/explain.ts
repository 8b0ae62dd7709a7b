/**
 * `POST /debug/explain`: a JSON body in the PolicyTestInput shape (what `policy test` cases and
 * `policy eval` take) is decided against the snapshot in force and explained rule by rule. The
 * same context builder, engine and explainer as `waygate policy eval --explain`, so the answer is
 * what a real CONNECT with that context gets from this gateway now.
 */
import { WaygateError } from '../errors.ts';
import type { DefaultAction } from '../policy/decision.ts';
import { contextFromInput } from '../policy/context-input.ts';
import { explainDecision, type Explanation } from '../policy/explain.ts';
import type { PolicySnapshot } from '../policy/snapshot.ts';

export function explainInput(snapshot: PolicySnapshot | undefined, defaultAction: DefaultAction, input: unknown): Explanation {
  if (!snapshot) throw new WaygateError('WG_USAGE', 'no policy snapshot is loaded yet');
  // `{"input": {...}}` (a PolicyTest case) and a bare input are both accepted.
  const body = input && typeof input === 'object' && !Array.isArray(input) && 'input' in input
    ? (input as { input: unknown }).input
    : input;
  return explainDecision(snapshot, contextFromInput(body), { defaultAction, clock: process.hrtime.bigint });
}
