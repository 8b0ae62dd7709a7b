/**
 * `waygate policy import networkpolicy`: the ingress rules of Kubernetes NetworkPolicies
 * (networking.k8s.io/v1) as waygate ALLOW policies, in the model istio.ts translates and evaluates
 * (an IstioPolicy with action ALLOW, scoped to the policy's namespace).
 *
 * Semantics (Kubernetes NetworkPolicy reference, kubernetes.io/docs/concepts/services-networking/
 * network-policies): a pod selected by a policy with type Ingress accepts only what some ingress
 * rule of some such policy allows; a pod no policy selects accepts everything (the gateway's
 * `defaultAction: ALLOW`); a policy with no ingress rule isolates its pods. A rule allows when one
 * of its `from` peers and one of its `ports` match; an absent or empty list matches everything.
 * An ipBlock matches its `cidr` minus its `except` blocks; `endPort` makes a range.
 *
 * Behind waygate a peer pod is known by its mesh identity: a namespaceSelector on
 * `kubernetes.io/metadata.name` becomes `source.namespace`. Whatever needs labels the gateway
 * cannot see (pod selectors, other namespace labels), egress, named ports and UDP/SCTP are refused
 * with their positions.
 */
import { isMap, isScalar, isSeq, type Node } from 'yaml';
import {
  DocumentReader,
  emptyMatch,
  forEachDocument,
  scalarString,
  type ImportInput,
  type IstioImportResult,
  parseBlock,
  type IstioMatch,
  type IstioPolicy,
  type IstioRule,
  type Pos,
  type StringMatch,
} from './istio.ts';

const NAMESPACE_LABEL = 'kubernetes.io/metadata.name';

/** Parses every NetworkPolicy of the inputs; other kinds are noted and skipped. */
export function importNetworkPolicies(inputs: readonly ImportInput[]): IstioImportResult {
  const out: IstioImportResult = { policies: [], refusals: [], notes: [], unreadable: [] };
  forEachDocument(inputs, out.unreadable, (root, pos) => {
    const apiVersion = scalarString(root.get('apiVersion', true) as Node | undefined);
    const kind = scalarString(root.get('kind', true) as Node | undefined);
    if (kind !== 'NetworkPolicy' || apiVersion !== 'networking.k8s.io/v1') {
      out.notes.push({ ...pos(root, ''), policy: null, message: `skipped: not a Kubernetes NetworkPolicy (apiVersion ${apiVersion ?? '?'}, kind ${kind ?? '?'})`, kind: 'skipped' });
      return;
    }
    const policy = new NetworkPolicyParser(root, pos, out).parse();
    if (policy !== null) out.policies.push(policy);
  });
  return out;
}

class NetworkPolicyParser extends DocumentReader {
  constructor(private readonly root: import('yaml').YAMLMap, pos: Pos, out: IstioImportResult) {
    super(pos, out);
  }

  parse(): IstioPolicy | null {
    const top = this.fields(this.root, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
    const metaNode = top.get('metadata')?.value ?? this.root;
    const meta = this.fields(metaNode, 'metadata', ['name', 'namespace', 'annotations', 'labels', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'ownerReferences', 'finalizers']);
    const name = scalarString(meta.get('name')?.value);
    const namespace = scalarString(meta.get('namespace')?.value);
    if (name === null) {
      this.refuse(metaNode, 'metadata.name', 'the policy has no metadata.name');
      return null;
    }
    this.policyId = namespace === null ? name : `${namespace}/${name}`;
    if (namespace === null) {
      this.refuse(metaNode, 'metadata.namespace', 'the policy has no metadata.namespace: it selects pods of its own namespace, so add the namespace it is applied in');
      return null;
    }
    const specNode = top.get('spec')?.value ?? null;
    const spec = this.fields(specNode, 'spec', ['podSelector', 'policyTypes', 'ingress', 'egress']);
    const podSelector = spec.get('podSelector');
    if (podSelector !== undefined && !emptySelector(podSelector.value)) {
      this.refuse(podSelector.key, 'spec.podSelector',
        'a non-empty podSelector names pods by label, which the gateway cannot see: only `podSelector: {}` (every pod of the namespace) is translated', 'pod-selector');
    }
    const types = spec.get('policyTypes');
    let ingressType = true;
    if (types !== undefined) {
      const list = this.strings(types.value, 'spec.policyTypes');
      ingressType = list.some((t) => t.value === 'Ingress');
      for (const t of list) {
        if (t.value === 'Egress') this.refuse(t.node, t.path, 'egress rules restrict what the pods connect to, not what reaches them through the gateway: not translated (remove Egress, or import the ingress part from a copy without it)', 'egress');
        else if (t.value !== 'Ingress') this.refuse(t.node, t.path, `unknown policy type "${t.value}": Ingress or Egress`, 'policy-type');
      }
      if (!ingressType && list.length > 0) this.refuse(types.key, 'spec.policyTypes', 'the policy has no Ingress type: nothing to translate', 'policy-type');
    }
    const egress = spec.get('egress');
    if (egress !== undefined) this.refuse(egress.key, 'spec.egress', 'egress rules are not translated (they restrict what the pods connect to)', 'egress');
    const rules: IstioRule[] = [];
    const ingress = spec.get('ingress');
    if (ingress !== undefined && ingress.value !== null) {
      if (!isSeq(ingress.value)) this.refuse(ingress.value, 'spec.ingress', 'expected a list of rules');
      else ingress.value.items.forEach((r, i) => {
        const rule = this.rule(r as Node, `spec.ingress[${i}]`, namespace);
        if (rule !== null) rules.push(rule);
      });
    }
    if (this.failed) return null;
    const origin = this.pos(meta.get('name')?.value, 'metadata.name');
    if (rules.length === 0) {
      this.note(ingress?.key ?? specNode ?? this.root, 'spec.ingress', 'no ingress rule: the namespace\'s pods accept no ingress; translated as a rule that is `false`, which no PolicyTest case can reach', 'matches-nothing');
    }
    return {
      namespace, name, action: 'ALLOW', dryRun: false, scope: { kind: 'namespace', namespace }, rules,
      waygateName: `${namespace}.${name}`, origin, sourceKind: 'NetworkPolicy', rulesField: 'ingress',
    };
  }

  private rule(node: Node, path: string, namespace: string): IstioRule | null {
    const f = this.fields(node, path, ['from', 'ports']);
    const clauses: IstioMatch[][] = [];
    const from = f.get('from');
    if (from !== undefined && from.value !== null) {
      if (!isSeq(from.value)) this.refuse(from.value, `${path}.from`, 'expected a list of peers');
      else if (from.value.items.length > 0) {
        clauses.push(from.value.items.flatMap((p, i) => {
          const m = this.peer(p as Node, `${path}.from[${i}]`, namespace);
          return m === null ? [] : [m];
        }));
      }
    }
    const ports = f.get('ports');
    if (ports !== undefined && ports.value !== null) {
      if (!isSeq(ports.value)) this.refuse(ports.value, `${path}.ports`, 'expected a list of ports');
      else if (ports.value.items.length > 0) {
        const entries = ports.value.items.map((p, i) => this.port(p as Node, `${path}.ports[${i}]`));
        // An entry without a port allows every TCP port: the rule then has no port constraint.
        if (!entries.includes('any')) clauses.push(entries.filter((m): m is IstioMatch => m !== null && m !== 'any'));
      }
    }
    return { clauses };
  }

  private peer(node: Node, path: string, namespace: string): IstioMatch | null {
    const f = this.fields(node, path, ['ipBlock', 'namespaceSelector', 'podSelector']);
    const m = emptyMatch();
    const ip = f.get('ipBlock');
    const ns = f.get('namespaceSelector');
    const pod = f.get('podSelector');
    if (ip !== undefined && (ns !== undefined || pod !== undefined)) {
      this.refuse(ip.key, `${path}.ipBlock`, 'a peer is either an ipBlock or selectors, never both (Kubernetes rejects this)');
      return null;
    }
    if (ip !== undefined) {
      const b = this.fields(ip.value, `${path}.ipBlock`, ['cidr', 'except']);
      const cidr = b.get('cidr');
      if (cidr === undefined) {
        this.refuse(ip.value ?? ip.key, `${path}.ipBlock.cidr`, 'an ipBlock needs a cidr', 'invalid-address');
        return null;
      }
      const cidrText = scalarString(cidr.value);
      if (cidrText === null || !cidrText.includes('/')) {
        this.refuse(cidr.value, `${path}.ipBlock.cidr`, `${JSON.stringify(cidrText ?? '?')} is not a CIDR block (a.b.c.d/n)`, 'invalid-address');
        return null;
      }
      const block = parseBlock(cidrText);
      if (block === null) {
        this.refuse(cidr.value, `${path}.ipBlock.cidr`, `"${cidrText}" is not a CIDR block`, 'invalid-address');
        return null;
      }
      m.sourceIps = [block];
      const except = b.get('except');
      if (except !== undefined) m.notSourceIps = this.ips(except.value, `${path}.ipBlock.except`);
      return m;
    }
    if (pod !== undefined && !emptySelector(pod.value)) {
      this.refuse(pod.key, `${path}.podSelector`, 'a non-empty podSelector names pods by label, which the gateway cannot see: not translated', 'pod-selector');
      return null;
    }
    if (ns === undefined) {
      if (pod === undefined) {
        this.refuse(node, path, 'an empty peer: Kubernetes requires ipBlock, namespaceSelector or podSelector', 'empty-match');
        return null;
      }
      // podSelector {} alone: every pod of the policy's own namespace.
      m.namespaces = [{ kind: 'exact', value: namespace }];
      return m;
    }
    const matches = this.namespaceSelector(ns.value, `${path}.namespaceSelector`);
    if (matches === null) return null;
    m.namespaces = matches.positive;
    m.notNamespaces = matches.negative;
    return m;
  }

  private namespaceSelector(node: Node | null, path: string): { positive: StringMatch[]; negative: StringMatch[] } | null {
    if (emptySelector(node)) {
      this.note(node, path, 'an empty namespaceSelector (every pod of every namespace) becomes "any caller with a mesh identity" (source.namespace != "")');
      return { positive: [{ kind: 'presence' }], negative: [] };
    }
    const f = this.fields(node, path, ['matchLabels', 'matchExpressions']);
    const labels = f.get('matchLabels');
    const exprs = f.get('matchExpressions');
    const why = `only a selection by ${NAMESPACE_LABEL} (the namespace's name) is translated: the gateway knows a caller's namespace from its identity, not the namespace's labels`;
    if (labels !== undefined && exprs !== undefined) {
      this.refuse(exprs.key, `${path}.matchExpressions`, `matchLabels and matchExpressions together: ${why}`, 'namespace-selector');
      return null;
    }
    if (labels !== undefined) {
      if (labels.value === null || !isMap(labels.value) || labels.value.items.length !== 1) {
        this.refuse(labels.value ?? labels.key, `${path}.matchLabels`, why, 'namespace-selector');
        return null;
      }
      const pair = labels.value.items[0]!;
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      const value = scalarString(pair.value as Node);
      if (key !== NAMESPACE_LABEL || value === null) {
        this.refuse(pair.key as Node, `${path}.matchLabels.${key}`, why, 'namespace-selector');
        return null;
      }
      return { positive: [{ kind: 'exact', value }], negative: [] };
    }
    if (exprs === undefined || exprs.value === null || !isSeq(exprs.value) || exprs.value.items.length !== 1) {
      this.refuse(exprs?.value ?? node, `${path}.matchExpressions`, `exactly one expression: ${why}`, 'namespace-selector');
      return null;
    }
    const e = this.fields(exprs.value.items[0] as Node, `${path}.matchExpressions[0]`, ['key', 'operator', 'values']);
    const key = scalarString(e.get('key')?.value);
    const op = scalarString(e.get('operator')?.value);
    if (key !== NAMESPACE_LABEL || (op !== 'In' && op !== 'NotIn') || e.get('values') === undefined) {
      this.refuse(exprs.value.items[0] as Node, `${path}.matchExpressions[0]`, `${why}, with operator In or NotIn`, 'namespace-selector');
      return null;
    }
    const values = this.strings(e.get('values')!.value, `${path}.matchExpressions[0].values`).map((v): StringMatch => ({ kind: 'exact', value: v.value }));
    return op === 'In' ? { positive: values, negative: [] } : { positive: [], negative: values };
  }

  /** One ports entry: a match, `any` (no port given: every TCP port), or null when refused. */
  private port(node: Node, path: string): IstioMatch | 'any' | null {
    const f = this.fields(node, path, ['protocol', 'port', 'endPort']);
    const proto = f.get('protocol');
    const protoText = proto === undefined ? 'TCP' : scalarString(proto.value);
    if (protoText !== 'TCP') {
      this.refuse(proto?.value, `${path}.protocol`, `${protoText ?? '?'}: waygate carries TCP tunnels only (HBONE); UDP and SCTP are not translated`, 'protocol');
      return null;
    }
    const m = emptyMatch();
    const port = f.get('port');
    if (port === undefined) {
      if (f.has('endPort')) this.refuse(f.get('endPort')!.key, `${path}.endPort`, 'endPort needs port', 'invalid-port');
      return 'any';
    }
    const p = port.value !== null && isScalar(port.value) && typeof port.value.value === 'number' ? port.value.value : NaN;
    if (!(Number.isInteger(p) && p >= 1 && p <= 65535)) {
      const named = port.value !== null && isScalar(port.value) && typeof port.value.value === 'string';
      this.refuse(port.value, `${path}.port`, named
        ? `"${String((port.value as import('yaml').Scalar).value)}" is a named port: it resolves per pod from container specs the gateway cannot see; write the number`
        : 'a port is a number 1-65535', named ? 'named-port' : 'invalid-port');
      return null;
    }
    const end = f.get('endPort');
    if (end !== undefined) {
      const e = end.value !== null && isScalar(end.value) && typeof end.value.value === 'number' ? end.value.value : NaN;
      if (!(Number.isInteger(e) && e >= p && e <= 65535)) {
        this.refuse(end.value, `${path}.endPort`, `endPort must be a number from port (${p}) to 65535`, 'invalid-port');
        return null;
      }
      m.portRanges = [[p, e]];
      return m;
    }
    m.ports = [p];
    return m;
  }
}

/** `{}`, a selector with empty matchLabels and matchExpressions, or null: selects everything. */
function emptySelector(node: Node | null): boolean {
  if (node === null) return true;
  if (!isMap(node)) return false;
  return node.items.every((pair) => {
    const v = pair.value as Node | null;
    return v === null || (isMap(v) && v.items.length === 0) || (isSeq(v) && v.items.length === 0);
  });
}
