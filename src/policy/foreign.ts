/**
 * Documents that are not waygate policies but are often mistaken for them: Istio's
 * AuthorizationPolicy (`security.istio.io`, same kind name as ours) and Kubernetes' NetworkPolicy.
 * Validated field by field against waygate's schema, such a document gives half a dozen schema
 * errors that all say the same thing; the policy front-end (documents.ts) reports this one message
 * instead, saying what the file is and where its translation stands.
 */

/** Istio's security API group; v1 and v1beta1 both carry AuthorizationPolicy. */
const ISTIO_SECURITY = /^security\.istio\.io\/(v1|v1beta1|v1alpha1)$/;
/** Kubernetes' NetworkPolicy API (networking.k8s.io/v1 is the only version ever served). */
const K8S_NETWORKING = /^networking\.k8s\.io\/v1(beta1)?$/;

/**
 * The one message for a document of another system's policy API, or null when `apiVersion`/`kind`
 * are not one of those (the caller then validates the document as usual). Both have a translator,
 * which the message names: `waygate policy import istio|networkpolicy` (src/policy/import/).
 */
export function foreignPolicyMessage(apiVersion: unknown, kind: unknown): string | null {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return null;
  if (ISTIO_SECURITY.test(apiVersion) && kind === 'AuthorizationPolicy') {
    return `this is an Istio AuthorizationPolicy (${apiVersion}), not a waygate policy (apiVersion waygate.dev/v1alpha1): ` +
      'waygate does not load Istio policies as they are. Translate it with `waygate policy import istio FILE|DIR --out DIR`, ' +
      'which writes the equivalent waygate policy and a PolicyTest, and refuses with positions what it cannot translate ' +
      'faithfully (docs/writing-policies.md, "Migrating from Istio")';
  }
  if (K8S_NETWORKING.test(apiVersion) && kind === 'NetworkPolicy') {
    return `this is a Kubernetes NetworkPolicy (${apiVersion}), not a waygate policy (apiVersion waygate.dev/v1alpha1): ` +
      'waygate does not load NetworkPolicies. Translate its ingress rules with ' +
      '`waygate policy import networkpolicy FILE|DIR --out DIR`, which writes ALLOW policies and a PolicyTest, and refuses ' +
      'with positions what it cannot translate faithfully (docs/writing-policies.md, "Migrating from Istio")';
  }
  return null;
}
