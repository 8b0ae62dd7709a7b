/**
 * `waygate policy import istio`: Istio AuthorizationPolicies (security.istio.io v1 / v1beta1) to
 * waygate policies with the same verdicts, for the L4 subset ztunnel enforces. Pure: text in,
 * generated documents, notes and refusals out (src/cli/policy-import.ts puts them on disk).
 *
 * Semantics follow Istio's reference (istio.io, reference/config/security/authorization-policy)
 * and ztunnel's evaluator (src/rbac.rs of istio/ztunnel), which this module mirrors in `IstioRule`:
 * a rule is a list of clauses that must all hold (its `from`, its `to`, and each `when` condition);
 * a clause holds when any of its matches does (the `from` sources, the `to` operations); a match
 * ANDs its fields; a field holds when any of its values matches and none of its `not` values does.
 * A policy without rules matches nothing; a rule without fields (`{}`) matches everything.
 * Anything that cannot be translated faithfully is refused with its position, never dropped: Istio
 * itself drops such ALLOW rules and keeps half of such DENY rules (istio/istio#61126).
 */
import { BlockList, isIP } from 'node:net';
import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, type Node, type Pair } from 'yaml';
import { stringify } from 'yaml';
import { parseSpiffeId } from '../../identity/spiffe.ts';
import type { PolicyAction } from '../decision.ts';
import { formatPolicyText } from '../fmt.ts';
import { API_VERSION } from '../model.ts';

export const ISTIO_API = /^security\.istio\.io\/(v1|v1beta1)$/;

/** A position in an input file. */
export interface ImportPosition {
  file: string;
  line: number;
  col: number;
  /** Field path in the document, e.g. `spec.rules[0].to[0].operation.methods`. */
  path: string;
}

/**
 * Why something is refused, as a stable code for scripts (`policy import -o json`); `invalid` is
 * input Istio or Kubernetes would reject too (wrong shape, missing name).
 */
export type RefusalReason =
  | 'invalid' | 'unknown-field' | 'invalid-value' | 'invalid-address' | 'invalid-port' | 'empty-match'
  | 'http-attribute' | 'unknown-when-key' | 'custom-action' | 'unknown-action' | 'workload-selector' | 'target-ref'
  | 'list-document' | 'api-version' | 'duplicate-policy'
  | 'egress' | 'policy-type' | 'pod-selector' | 'namespace-selector' | 'named-port' | 'protocol';

/** Something the importer will not translate, with where it is and why. */
export interface Refusal extends ImportPosition {
  /** The Istio policy (`namespace/name`), or null when the document has no usable name. */
  policy: string | null;
  message: string;
  reason?: RefusalReason;
}

/**
 * What a note is about, for scripts: `destination-side` is a policy the destination's ztunnel
 * enforces by identity (it would deny everything waygate forwards while it stays applied),
 * `matches-nothing` a policy without rules, `skipped` a document of another kind.
 */
export type NoteKind = 'destination-side' | 'matches-nothing' | 'skipped' | 'scope' | 'translation';

/** Something true about the translation a reviewer must know (never a change of verdict). */
export interface ImportNote extends ImportPosition {
  policy: string | null;
  message: string;
  kind?: NoteKind;
}

/** Istio string matching as ztunnel does it (src/rbac.rs StringMatch). */
export type StringMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'suffix'; value: string }
  | { kind: 'presence' };

export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}

/** One source, operation or `when` condition: every field present must hold (ztunnel RbacMatch). */
export interface IstioMatch {
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
  sourceIps: string[];
  notSourceIps: string[];
  destinationIps: string[];
  notDestinationIps: string[];
  ports: number[];
  notPorts: number[];
  /** Inclusive port ranges, ORed with `ports` (NetworkPolicy `endPort`; Istio has none). */
  portRanges: Array<[number, number]>;
}

/** A rule: every clause must hold; a clause holds when any of its matches does. */
export interface IstioRule {
  clauses: IstioMatch[][];
}

/** Which tunnels a policy governs behind the gateway. */
export type IstioScope =
  | { kind: 'all'; why: 'root-namespace' | 'gateway' }
  | { kind: 'namespace'; namespace: string }
  | { kind: 'services'; hosts: string[] };

/** One Istio policy, parsed and checked: the model both the translation and `evaluateIstio` read. */
export interface IstioPolicy {
  namespace: string;
  name: string;
  action: PolicyAction;
  dryRun: boolean;
  scope: IstioScope;
  /** Empty when the policy has no rules (matches nothing). */
  rules: IstioRule[];
  /** The waygate policy name: `<namespace>.<name>`. */
  waygateName: string;
  origin: ImportPosition;
  /** What the source is, for the generated comments: `Istio AuthorizationPolicy`, `NetworkPolicy`. */
  sourceKind?: string;
  /** The source field whose i-th entry becomes `rule-i`: `rules` (Istio), `ingress` (NetworkPolicy). */
  rulesField?: string;
}

export interface IstioImportOptions {
  /** Istio's root namespace: a policy there without selector/targetRefs governs the whole mesh. */
  rootNamespace?: string;
  /** The cluster domain of service hostnames (`destination.service`), `cluster.local` by default. */
  clusterDomain?: string;
}

export interface ImportInput {
  file: string;
  text: string;
}

export interface IstioImportResult {
  policies: IstioPolicy[];
  refusals: Refusal[];
  notes: ImportNote[];
  /** Input that could not be read as YAML at all (exit 2). */
  unreadable: Refusal[];
}

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks'];
const SOURCE_HTTP = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_HTTP = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const WHEN_KEYS = ['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port'];

export function emptyMatch(): IstioMatch {
  return {
    principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], serviceAccounts: [], notServiceAccounts: [],
    sourceIps: [], notSourceIps: [], destinationIps: [], notDestinationIps: [], ports: [], notPorts: [], portRanges: [],
  };
}

export function isEmptyMatch(m: IstioMatch): boolean {
  return Object.values(m).every((v: unknown[]) => v.length === 0);
}

/** Parses every AuthorizationPolicy of the inputs; other kinds are noted and skipped. */
export function importIstio(inputs: readonly ImportInput[], opts: IstioImportOptions = {}): IstioImportResult {
  const rootNamespace = opts.rootNamespace ?? 'istio-system';
  const clusterDomain = opts.clusterDomain ?? 'cluster.local';
  const out: IstioImportResult = { policies: [], refusals: [], notes: [], unreadable: [] };
  forEachDocument(inputs, out.unreadable, (root, pos) => {
    const apiVersion = scalarString(root.get('apiVersion', true) as Node | undefined);
    const kind = scalarString(root.get('kind', true) as Node | undefined);
    if (kind === 'List' || kind === 'AuthorizationPolicyList') {
      out.refusals.push({ ...pos(root, 'kind'), policy: null, message: `a ${kind} is not read: give the AuthorizationPolicies as separate documents (split with ---)`, reason: 'list-document' });
      return;
    }
    if (kind !== 'AuthorizationPolicy' || apiVersion === null || !/^security\.istio\.io\//.test(apiVersion)) {
      out.notes.push({ ...pos(root, ''), policy: null, message: `skipped: not an Istio AuthorizationPolicy (apiVersion ${apiVersion ?? '?'}, kind ${kind ?? '?'})`, kind: 'skipped' });
      return;
    }
    if (!ISTIO_API.test(apiVersion)) {
      out.refusals.push({ ...pos(root.get('apiVersion', true) as Node, 'apiVersion'), policy: null, message: `apiVersion ${apiVersion} is not translated: only security.istio.io/v1 and v1beta1`, reason: 'api-version' });
      return;
    }
    const p = new PolicyParser(root, pos, out, rootNamespace, clusterDomain);
    const policy = p.parse();
    if (policy !== null) out.policies.push(policy);
  });
  const seen = new Map<string, IstioPolicy>();
  for (const p of out.policies) {
    const other = seen.get(p.waygateName);
    if (other !== undefined) {
      out.refusals.push({ ...p.origin, policy: `${p.namespace}/${p.name}`, message: `the policy ${p.namespace}/${p.name} is given twice (also at ${other.origin.file}:${other.origin.line}:${other.origin.col})`, reason: 'duplicate-policy' });
    }
    seen.set(p.waygateName, p);
  }
  return out;
}

/**
 * Calls `each` with every mapping document of the inputs and a position function for its nodes;
 * YAML syntax errors and documents that are not mappings go to `unreadable`.
 */
export function forEachDocument(inputs: readonly ImportInput[], unreadable: Refusal[], each: (root: import('yaml').YAMLMap, pos: Pos) => void): void {
  for (const input of inputs) {
    const lc = new LineCounter();
    const docs = parseAllDocuments(input.text, { lineCounter: lc, prettyErrors: false });
    const pos = (node: Node | null | undefined, path: string): ImportPosition => {
      const p = lc.linePos(node?.range?.[0] ?? 0);
      return { file: input.file, line: p.line, col: p.col, path };
    };
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      if (doc.errors.length > 0) {
        const e = doc.errors[0]!;
        const p = lc.linePos(e.pos[0]);
        unreadable.push({ file: input.file, line: p.line, col: p.col, path: '', policy: null, message: `not valid YAML: ${e.message.split('\n')[0]}` });
        continue;
      }
      const root = doc.contents;
      if (root === null) continue;
      if (!isMap(root)) {
        unreadable.push({ ...pos(root as Node, ''), policy: null, message: 'a document must be a mapping (a Kubernetes object)' });
        continue;
      }
      each(root, pos);
    }
  }
}

export function scalarString(n: Node | null | undefined): string | null {
  return n !== undefined && n !== null && isScalar(n) && typeof n.value === 'string' ? n.value : null;
}

export type Pos = (node: Node | null | undefined, path: string) => ImportPosition;

/** Reads one document's YAML nodes, collecting refusals and notes with positions. */
export class DocumentReader {
  protected policyId: string | null = null;
  protected failed = false;

  constructor(
    protected readonly pos: Pos,
    protected readonly out: Pick<IstioImportResult, 'refusals' | 'notes'>,
  ) {}

  protected refuse(node: Node | null | undefined, path: string, message: string, reason: RefusalReason = 'invalid'): void {
    this.failed = true;
    this.out.refusals.push({ ...this.pos(node, path), policy: this.policyId, message, reason });
  }

  protected note(node: Node | null | undefined, path: string, message: string, kind: NoteKind = 'translation'): void {
    this.out.notes.push({ ...this.pos(node, path), policy: this.policyId, message, kind });
  }

  /** The pairs of a mapping node, refusing keys outside `known` (Istio rejects unknown fields too). */
  protected fields(node: Node | null | undefined, path: string, known: readonly string[]): Map<string, { key: Node; value: Node | null }> {
    const res = new Map<string, { key: Node; value: Node | null }>();
    if (node === null || node === undefined) return res;
    if (!isMap(node)) {
      this.refuse(node, path, 'expected a mapping');
      return res;
    }
    for (const pair of node.items as Pair<Node, Node | null>[]) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '?';
      const sub = path === '' ? k : `${path}.${k}`;
      if (!known.includes(k)) {
        this.refuse(pair.key, sub, `unknown field "${k}"`, 'unknown-field');
        continue;
      }
      res.set(k, { key: pair.key, value: pair.value });
    }
    return res;
  }

  protected strings(node: Node | null, path: string): Array<{ value: string; node: Node; path: string }> {
    if (node === null || !isSeq(node)) {
      this.refuse(node, path, 'expected a list of strings');
      return [];
    }
    const res: Array<{ value: string; node: Node; path: string }> = [];
    node.items.forEach((item, i) => {
      const n = item as Node;
      if (isScalar(n) && (typeof n.value === 'string' || typeof n.value === 'number')) res.push({ value: String(n.value), node: n, path: `${path}[${i}]` });
      else this.refuse(n, `${path}[${i}]`, 'expected a string');
    });
    return res;
  }

  /** Addresses or CIDR blocks, as masked blocks; invalid ones refused. */
  protected ips(node: Node | null | undefined, path: string): string[] {
    if (node === undefined) return [];
    const res: string[] = [];
    for (const s of this.strings(node ?? null, path)) {
      const block = parseBlock(s.value);
      if (block === null) this.refuse(s.node, s.path, `"${s.value}" is not an IP address or CIDR block`, 'invalid-address');
      else res.push(block);
    }
    return res;
  }
}

class PolicyParser extends DocumentReader {
  constructor(
    private readonly root: import('yaml').YAMLMap,
    pos: Pos,
    out: IstioImportResult,
    private readonly rootNamespace: string,
    private readonly clusterDomain: string,
  ) {
    super(pos, out);
  }

  parse(): IstioPolicy | null {
    const top = this.fields(this.root, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
    const meta = this.fields(top.get('metadata')?.value, 'metadata', ['name', 'namespace', 'annotations', 'labels', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'ownerReferences', 'finalizers']);
    const name = scalarString(meta.get('name')?.value);
    const namespace = scalarString(meta.get('namespace')?.value);
    const where = meta.get('name')?.value ?? this.root;
    if (name === null) {
      this.refuse(top.get('metadata')?.value ?? this.root, 'metadata.name', 'the policy has no metadata.name');
      return null;
    }
    if (namespace === null) {
      this.policyId = name;
      this.refuse(top.get('metadata')?.value ?? this.root, 'metadata.namespace',
        'the policy has no metadata.namespace: its scope (which workloads it governs) depends on it; add the namespace it is applied in');
      return null;
    }
    this.policyId = `${namespace}/${name}`;
    const annotations = meta.get('annotations')?.value;
    let dryRun = false;
    if (annotations !== undefined && annotations !== null && isMap(annotations)) {
      const dr = annotations.get('istio.io/dry-run', true) as Node | undefined;
      if (dr !== undefined) {
        const v = isScalar(dr) ? String(dr.value).toLowerCase() : '';
        if (v === 'true') dryRun = true;
        else if (v !== 'false') this.refuse(dr, 'metadata.annotations.istio.io/dry-run', `istio.io/dry-run must be "true" or "false", got ${JSON.stringify(isScalar(dr) ? dr.value : '?')}`, 'invalid-value');
      }
    }
    const specNode = top.get('spec')?.value ?? null;
    const spec = this.fields(specNode, 'spec', ['action', 'selector', 'targetRef', 'targetRefs', 'rules', 'provider']);
    const actionNode = spec.get('action')?.value;
    const actionText = actionNode === undefined || actionNode === null ? 'ALLOW' : scalarString(actionNode);
    let action: PolicyAction = 'ALLOW';
    if (actionText === 'ALLOW' || actionText === 'DENY' || actionText === 'AUDIT') action = actionText;
    else if (actionText === 'CUSTOM') {
      this.refuse(actionNode, 'spec.action', 'CUSTOM delegates the decision to an external authorizer (spec.provider); waygate has no such call-out, so there is no faithful translation', 'custom-action');
    } else this.refuse(actionNode, 'spec.action', `unknown action ${JSON.stringify(actionText)}: ALLOW, DENY or AUDIT`, 'unknown-action');
    if (spec.has('provider') && actionText !== 'CUSTOM') this.refuse(spec.get('provider')!.key, 'spec.provider', 'provider is only for CUSTOM, which is not translated', 'custom-action');

    const scope = this.scope(spec, namespace);
    const rules: IstioRule[] = [];
    const rulesNode = spec.get('rules')?.value ?? null;
    if (rulesNode !== null) {
      if (!isSeq(rulesNode)) this.refuse(rulesNode, 'spec.rules', 'expected a list of rules');
      else rulesNode.items.forEach((r, i) => {
        const rule = this.rule(r as Node, `spec.rules[${i}]`);
        if (rule !== null) rules.push(rule);
      });
    }
    const origin = this.pos(where, 'metadata.name');
    if (this.failed || scope === null) return null;
    const waygateName = `${namespace}.${name}`;
    if (rules.length === 0 && action === 'ALLOW') {
      this.note(rulesNode ?? specNode ?? this.root, 'spec.rules',
        'an ALLOW policy without rules allows nothing: every tunnel it governs is denied unless another ALLOW policy matches; its waygate rule is the constant `false`, which no PolicyTest case can reach (`policy test --coverage` lists it as matching nothing by construction, outside the percentage)', 'matches-nothing');
    }
    if (rules.length === 0 && action !== 'ALLOW') {
      this.note(rulesNode ?? specNode ?? this.root, 'spec.rules', `a ${action} policy without rules matches nothing: it is translated as a rule that is \`false\``, 'matches-nothing');
    }
    // Without targetRefs a policy binds to workloads (the whole mesh from the root namespace), so
    // in ambient mode the destination's ztunnel enforces it, not the waypoint waygate stands in for.
    const atDestination = scope.kind === 'namespace' || (scope.kind === 'all' && scope.why === 'root-namespace');
    if (atDestination && action === 'ALLOW' && rules.some((r) => r.clauses.some((c) => c.some((m) => m.principals.length + m.namespaces.length + m.serviceAccounts.length > 0)))) {
      this.note(where, 'metadata.name',
        `this policy binds to workloads (${scope.kind === 'namespace' ? `namespace ${namespace}` : 'the whole mesh'}), so the destination's ztunnel enforces it and allows by identity: while it stays applied in the mesh, the source ztunnel sees behind waygate is waygate's identity, so it would deny every tunnel waygate forwards. Remove it from the mesh (or bind it to the waypoint with targetRefs) once waygate enforces the imported copy`, 'destination-side');
    }
    return { namespace, name, action, dryRun, scope, rules, waygateName, origin };
  }

  private scope(spec: Map<string, { key: Node; value: Node | null }>, namespace: string): IstioScope | null {
    const selector = spec.get('selector');
    if (selector !== undefined) {
      this.refuse(selector.key, 'spec.selector',
        'a workload selector (matchLabels) names pods by label, which the gateway cannot see: the policy is not translated. Use targetRefs to the Service those pods back (a selector on destination.service), or write the waygate policy by hand', 'workload-selector');
      return null;
    }
    const refs: Array<{ node: Node; path: string }> = [];
    const one = spec.get('targetRef');
    if (one !== undefined && one.value !== null) refs.push({ node: one.value, path: 'spec.targetRef' });
    const many = spec.get('targetRefs');
    if (many !== undefined) {
      if (many.value === null || !isSeq(many.value)) this.refuse(many.value ?? many.key, 'spec.targetRefs', 'expected a list');
      else many.value.items.forEach((n, i) => refs.push({ node: n as Node, path: `spec.targetRefs[${i}]` }));
    }
    if (refs.length === 0) {
      if (namespace === this.rootNamespace) return { kind: 'all', why: 'root-namespace' };
      return { kind: 'namespace', namespace };
    }
    const hosts: string[] = [];
    let gateway = false;
    for (const r of refs) {
      const f = this.fields(r.node, r.path, ['group', 'kind', 'name', 'namespace']);
      const kind = scalarString(f.get('kind')?.value);
      const group = scalarString(f.get('group')?.value) ?? '';
      const name = scalarString(f.get('name')?.value);
      const ns = scalarString(f.get('namespace')?.value);
      if (ns !== null && ns !== namespace) {
        this.refuse(f.get('namespace')!.value, `${r.path}.namespace`, 'Istio only binds targetRefs in the policy\'s own namespace', 'target-ref');
        continue;
      }
      if (name === null) {
        this.refuse(r.node, `${r.path}.name`, 'a targetRef needs a name', 'target-ref');
        continue;
      }
      if (kind === 'Gateway' && (group === 'gateway.networking.k8s.io' || group === '')) {
        gateway = true;
        this.note(r.node, r.path, `targetRefs the Gateway ${namespace}/${name}: taken as the waypoint waygate stands in for, so the policy governs every tunnel`, 'scope');
      } else if (kind === 'Service' && (group === '' || group === 'core')) {
        hosts.push(`${name}.${namespace}.svc.${this.clusterDomain}`);
      } else {
        this.refuse(f.get('kind')?.value ?? r.node, `${r.path}.kind`,
          `targetRefs to ${group === '' ? '' : group + '/'}${kind ?? '?'} is not translated: only a Service (a selector on destination.service) or the waypoint Gateway`, 'target-ref');
      }
    }
    if (gateway && hosts.length > 0) {
      this.note(refs[0]!.node, 'spec.targetRefs', 'targets both the Gateway and Services: the Gateway already governs every tunnel', 'scope');
    }
    if (gateway) return { kind: 'all', why: 'gateway' };
    if (hosts.length === 0) return null;
    return { kind: 'services', hosts };
  }

  private rule(node: Node, path: string): IstioRule | null {
    const f = this.fields(node, path, ['from', 'to', 'when']);
    const clauses: IstioMatch[][] = [];
    const from = f.get('from');
    if (from !== undefined) clauses.push(this.list(from.value, `${path}.from`, 'source', (n, p) => this.source(n, p)));
    const to = f.get('to');
    if (to !== undefined) clauses.push(this.list(to.value, `${path}.to`, 'operation', (n, p) => this.operation(n, p)));
    const when = f.get('when');
    if (when !== undefined) {
      if (when.value === null || !isSeq(when.value)) this.refuse(when.value ?? when.key, `${path}.when`, 'expected a list of conditions');
      else when.value.items.forEach((c, i) => {
        const m = this.condition(c as Node, `${path}.when[${i}]`);
        if (m !== null) clauses.push([m]);
      });
    }
    return { clauses };
  }

  private list(node: Node | null, path: string, key: 'source' | 'operation', parse: (n: Node, p: string) => IstioMatch | null): IstioMatch[] {
    const res: IstioMatch[] = [];
    if (node === null || !isSeq(node)) {
      this.refuse(node, path, `expected a list of { ${key}: ... }`);
      return res;
    }
    node.items.forEach((item, i) => {
      const p = `${path}[${i}]`;
      const f = this.fields(item as Node, p, [key]);
      const inner = f.get(key);
      if (inner === undefined || inner.value === null) {
        this.refuse(item as Node, `${p}.${key}`, `an entry without ${key} fields: ztunnel skips an empty match (src/rbac.rs), so it matches nothing; give the fields or remove the entry`, 'empty-match');
        return;
      }
      const m = parse(inner.value, `${p}.${key}`);
      if (m !== null) res.push(m);
    });
    return res;
  }

  private source(node: Node, path: string): IstioMatch | null {
    const refusedBefore = this.out.refusals.length;
    const f = this.fields(node, path, [...SOURCE_FIELDS, ...SOURCE_HTTP]);
    const m = emptyMatch();
    for (const k of SOURCE_HTTP) {
      const e = f.get(k);
      if (e !== undefined) this.refuse(e.key, `${path}.${k}`, `${k} is an HTTP attribute (${k.toLowerCase().includes('request') ? 'a JWT\'s principal' : 'the X-Forwarded-For client address'}): waygate decides tunnels at L4 and never sees it`, 'http-attribute');
    }
    const strMatches = (k: string, principal: boolean) => {
      const e = f.get(k);
      return e === undefined ? [] : this.strings(e.value, `${path}.${k}`).flatMap((s) => this.stringMatch(s, principal));
    };
    m.principals = strMatches('principals', true);
    m.notPrincipals = strMatches('notPrincipals', true);
    m.namespaces = strMatches('namespaces', false);
    m.notNamespaces = strMatches('notNamespaces', false);
    for (const [k, dest] of [['serviceAccounts', m.serviceAccounts], ['notServiceAccounts', m.notServiceAccounts]] as const) {
      const e = f.get(k);
      if (e === undefined) continue;
      for (const s of this.strings(e.value, `${path}.${k}`)) {
        const parts = s.value.split('/');
        if (parts.length !== 2 || parts[0] === '' || parts[1] === '' || s.value.includes('*')) {
          this.refuse(s.node, s.path, `"${s.value}" is not a service account as ztunnel matches it: <namespace>/<serviceaccount>, exactly (no wildcards)`, 'invalid-value');
          continue;
        }
        dest.push({ namespace: parts[0]!, serviceAccount: parts[1]! });
      }
    }
    m.sourceIps = this.ips(f.get('ipBlocks')?.value, `${path}.ipBlocks`);
    m.notSourceIps = this.ips(f.get('notIpBlocks')?.value, `${path}.notIpBlocks`);
    // Only lists that are all empty (or absent); a field refused above already says what is wrong.
    if (isEmptyMatch(m) && this.out.refusals.length === refusedBefore) {
      this.refuse(node, path, 'an empty source (no field, or only empty lists): ztunnel skips an empty match (src/rbac.rs), so it matches nothing; give the values or remove the entry', 'empty-match');
      return null;
    }
    return m;
  }

  private operation(node: Node, path: string): IstioMatch | null {
    const refusedBefore = this.out.refusals.length;
    const f = this.fields(node, path, ['ports', 'notPorts', ...OPERATION_HTTP]);
    for (const k of OPERATION_HTTP) {
      const e = f.get(k);
      if (e !== undefined) this.refuse(e.key, `${path}.${k}`, `${k} is an HTTP attribute: waygate decides tunnels at L4 and never sees it (Istio enforces it only in a waypoint)`, 'http-attribute');
    }
    const m = emptyMatch();
    m.ports = this.ports(f.get('ports')?.value, `${path}.ports`);
    m.notPorts = this.ports(f.get('notPorts')?.value, `${path}.notPorts`);
    if (isEmptyMatch(m) && this.out.refusals.length === refusedBefore) {
      this.refuse(node, path, 'an empty operation (no field, or only empty lists): ztunnel skips an empty match (src/rbac.rs), so it matches nothing; give the values or remove the entry', 'empty-match');
      return null;
    }
    return m;
  }

  private condition(node: Node, path: string): IstioMatch | null {
    const refusedBefore = this.out.refusals.length;
    const f = this.fields(node, path, ['key', 'values', 'notValues']);
    const keyNode = f.get('key')?.value;
    const key = scalarString(keyNode);
    if (key === null) {
      this.refuse(node, `${path}.key`, 'a condition needs a key');
      return null;
    }
    if (!WHEN_KEYS.includes(key)) {
      const why = key.startsWith('request.') || key.startsWith('remote.')
        ? 'an HTTP attribute: waygate decides tunnels at L4 and never sees it'
        : `not one of the L4 keys ztunnel enforces (${WHEN_KEYS.join(', ')})`;
      this.refuse(keyNode, `${path}.key`, `when key "${key}" is ${why}`, key.startsWith('request.') || key.startsWith('remote.') ? 'http-attribute' : 'unknown-when-key');
      return null;
    }
    const values = f.get('values');
    const notValues = f.get('notValues');
    if (values === undefined && notValues === undefined) {
      this.refuse(node, path, 'a condition needs values or notValues');
      return null;
    }
    const m = emptyMatch();
    const each = (e: { value: Node | null } | undefined, p: string, positive: boolean) => {
      if (e === undefined) return;
      switch (key) {
        case 'source.ip':
          (positive ? m.sourceIps : m.notSourceIps).push(...this.ips(e.value, p));
          break;
        case 'destination.ip':
          (positive ? m.destinationIps : m.notDestinationIps).push(...this.ips(e.value, p));
          break;
        case 'destination.port':
          (positive ? m.ports : m.notPorts).push(...this.ports(e.value, p));
          break;
        case 'source.namespace':
          (positive ? m.namespaces : m.notNamespaces).push(...this.strings(e.value, p).flatMap((s) => this.stringMatch(s, false)));
          break;
        case 'source.principal':
          (positive ? m.principals : m.notPrincipals).push(...this.strings(e.value, p).flatMap((s) => this.stringMatch(s, true)));
          break;
      }
    };
    each(values, `${path}.values`, true);
    each(notValues, `${path}.notValues`, false);
    if (isEmptyMatch(m) && this.out.refusals.length === refusedBefore) {
      this.refuse(node, path, 'a condition whose values and notValues are empty: ztunnel skips an empty match (src/rbac.rs), so it matches nothing; give the values or remove the condition', 'empty-match');
      return null;
    }
    return m;
  }

  /** `*`, `prefix*`, `*suffix` or an exact value, as Istio reads them. */
  private stringMatch(s: { value: string; node: Node; path: string }, principal: boolean): StringMatch[] {
    const v = s.value;
    if (principal && v.startsWith('spiffe://')) {
      this.refuse(s.node, s.path, `"${v}": Istio principals are written without "spiffe://" (ztunnel strips it before matching, so this value matches nothing); write "${v.slice('spiffe://'.length)}"`, 'invalid-value');
      return [];
    }
    if (v === '*') return [{ kind: 'presence' }];
    const stars = v.split('*').length - 1;
    if (stars === 1 && v.endsWith('*')) return [{ kind: 'prefix', value: v.slice(0, -1) }];
    if (stars === 1 && v.startsWith('*')) return [{ kind: 'suffix', value: v.slice(1) }];
    if (stars > 0) {
      this.refuse(s.node, s.path, `"${v}": Istio matches "*" only alone, at the start or at the end; elsewhere it is a literal character, which is almost certainly not meant`, 'invalid-value');
      return [];
    }
    if (v === '') {
      this.refuse(s.node, s.path, 'an empty value: write "*" for any value', 'invalid-value');
      return [];
    }
    return [{ kind: 'exact', value: v }];
  }

  private ports(node: Node | null | undefined, path: string): number[] {
    if (node === undefined) return [];
    const res: number[] = [];
    for (const s of this.strings(node ?? null, path)) {
      const n = /^[0-9]{1,5}$/.test(s.value) ? Number(s.value) : NaN;
      if (!(n >= 1 && n <= 65535)) this.refuse(s.node, s.path, `"${s.value}" is not a port: Istio ports are single numbers 1-65535 (no ranges, no names)`, 'invalid-port');
      else res.push(n);
    }
    return res;
  }
}

/** `a.b.c.d`, `a.b.c.d/n` or IPv6 forms, as a CIDR block with its host bits cleared; null when invalid. */
export function parseBlock(text: string): string | null {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(b)) return null;
    bits = Number(b);
    if (bits > max) return null;
  }
  return `${maskAddress(addr, family, bits)}/${bits}`;
}

function maskAddress(addr: string, family: number, bits: number): string {
  if (family === 4) {
    const parts = addr.split('.').map(Number);
    let n = ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    n = (n & mask) >>> 0;
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  }
  const groups = expand6(addr);
  let v = 0n;
  for (const g of groups) v = (v << 16n) + BigInt(g);
  const mask = bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
  v &= mask;
  const out: string[] = [];
  for (let i = 7; i >= 0; i--) out.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  return compress6(out);
}

function expand6(addr: string): number[] {
  let a = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4 !== null) {
    const p = v4[1]!.split('.').map(Number);
    a = a.slice(0, v4.index) + ((p[0]! << 8) + p[1]!).toString(16) + ':' + ((p[2]! << 8) + p[3]!).toString(16);
  }
  const [head, tail] = a.includes('::') ? a.split('::') as [string, string] : [a, null];
  const h = head === '' ? [] : head.split(':');
  const t = tail === null || tail === '' ? [] : tail.split(':');
  const fill = tail === null ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

/** RFC 5952 text: the longest run of two or more zero groups becomes `::`. */
function compress6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

// ---------------------------------------------------------------------------------------------
// Translation to CEL

const PRINCIPAL = 'source.principal';
const SPIFFE = 'spiffe://';

function lit(s: string): string {
  return JSON.stringify(s);
}

function principalCel(m: StringMatch): string {
  switch (m.kind) {
    case 'exact': return `${PRINCIPAL} == ${lit(SPIFFE + m.value)}`;
    case 'prefix': return `${PRINCIPAL}.startsWith(${lit(SPIFFE + m.value)})`;
    case 'presence': return `${PRINCIPAL} != ""`;
    case 'suffix': {
      // ztunnel matches the suffix against the ID without "spiffe://": when the suffix could
      // overlap that scheme text, also require the ID to be long enough to hold both.
      const overlaps = [...Array(SPIFFE.length).keys()].some((i) => m.value.startsWith(SPIFFE.slice(i + 1)) && i + 1 < SPIFFE.length);
      const ends = `${PRINCIPAL}.endsWith(${lit(m.value)})`;
      return overlaps ? `${ends} && size(${PRINCIPAL}) >= ${SPIFFE.length + m.value.length}` : ends;
    }
  }
}

function stringCel(attr: string, m: StringMatch): string {
  switch (m.kind) {
    case 'exact': return `${attr} == ${lit(m.value)}`;
    case 'prefix': return `${attr}.startsWith(${lit(m.value)})`;
    case 'suffix': return `${attr}.endsWith(${lit(m.value)})`;
    case 'presence': return `${attr} != ""`;
  }
}

function anyOf(terms: string[]): string {
  if (terms.length === 1) return terms[0]!;
  return terms.map((t) => (/ (&&|\|\|) /.test(t) ? `(${t})` : t)).join(' || ');
}

function field<T>(positive: T[], negative: T[], term: (v: T) => string, list?: (vs: T[]) => string): string[] {
  const res: string[] = [];
  const group = (vs: T[]) => (list !== undefined && vs.length > 1 ? list(vs) : anyOf(vs.map(term)));
  if (positive.length > 0) res.push(group(positive));
  if (negative.length > 0) {
    const g = group(negative);
    res.push(negative.length === 1 && list === undefined && !/ (&&|\|\|) /.test(g) ? negateSimple(g) : `!(${g})`);
  }
  return res;
}

function negateSimple(t: string): string {
  if (t.includes(' == ')) return t.replace(' == ', ' != ');
  if (t.includes(' != ')) return t.replace(' != ', ' == ');
  return `!${t}`;
}

function ipCel(attr: string, block: string): string {
  return `cidr(${lit(block)}).containsIP(${attr})`;
}

function portList(ports: number[]): string {
  return `destination.port in [${ports.join(', ')}]`;
}

function portTerms(m: IstioMatch): string[] {
  const terms = field(m.ports, m.notPorts, (p) => `destination.port == ${p}`, portList);
  if (m.portRanges.length === 0) return terms;
  const ranges = m.portRanges.map(([a, b]) => `destination.port >= ${a} && destination.port <= ${b}`);
  const listed = m.ports.length === 0 ? [] : [terms.shift()!];
  return [anyOf([...listed, ...ranges]), ...terms];
}

/** One match as a CEL conjunction; `true` for a match without fields. */
export function matchCel(m: IstioMatch): string {
  const terms = [
    ...field(m.principals, m.notPrincipals, principalCel),
    ...field(m.namespaces, m.notNamespaces, (x) => stringCel('source.namespace', x)),
    ...field(m.serviceAccounts, m.notServiceAccounts, (x) => `source.namespace == ${lit(x.namespace)} && source.serviceAccount == ${lit(x.serviceAccount)}`),
    ...field(m.sourceIps, m.notSourceIps, (x) => ipCel('source.ip', x)),
    ...field(m.destinationIps, m.notDestinationIps, (x) => ipCel('destination.ip', x)),
    ...portTerms(m),
  ];
  if (terms.length === 0) return 'true';
  return terms.map((t) => (terms.length > 1 && / \|\| /.test(t) && !t.startsWith('!(') ? `(${t})` : t)).join(' && ');
}

/** A rule as one CEL expression: its clauses ANDed, each clause's matches ORed. */
export function ruleCel(r: IstioRule): string {
  const clauses = r.clauses.map((c) => (c.length === 0 ? 'true' : anyOf(c.map(matchCel))));
  const kept = clauses.filter((c) => c !== 'true');
  if (kept.length === 0) return 'true';
  if (kept.length === 1) return kept[0]!;
  return kept.map((c) => (/ \|\| /.test(c) ? `(${c})` : c)).join(' && ');
}

/** The selector of a policy's scope; null when it governs every tunnel. */
export function scopeCel(s: IstioScope): string | null {
  switch (s.kind) {
    case 'all': return null;
    case 'namespace': return `destination.namespace == ${lit(s.namespace)}`;
    case 'services': return s.hosts.length === 1 ? `destination.service == ${lit(s.hosts[0]!)}` : `destination.service in [${s.hosts.map(lit).join(', ')}]`;
  }
}

// ---------------------------------------------------------------------------------------------
// Istio's semantics, evaluated directly (the generated PolicyTests' expectations)

/** The L4 facts Istio decides on, plus where the tunnel goes (for the policy scope). */
export interface IstioInput {
  /** Full SPIFFE ID or "" (no identity). */
  principal: string;
  sourceIp: string;
  destinationIp: string;
  port: number;
  /** destination.service / destination.namespace as discovery would fill them. */
  service: string;
  namespace: string;
}

export interface IstioVerdict {
  decision: 'allow' | 'deny';
  /** The verdict had dry-run policies been enforced. */
  dryRun: 'allow' | 'deny';
  /** AUDIT rules that match, as `<waygate policy>/<rule>`. */
  audit: string[];
}

function spiffeParts(principal: string): { stripped: string | null; namespace: string; serviceAccount: string } {
  if (!principal.startsWith(SPIFFE)) return { stripped: null, namespace: '', serviceAccount: '' };
  const stripped = principal.slice(SPIFFE.length);
  const m = /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(stripped);
  return { stripped, namespace: m?.[1] ?? '', serviceAccount: m?.[2] ?? '' };
}

function strMatches(m: StringMatch, check: string): boolean {
  switch (m.kind) {
    case 'prefix': return check.startsWith(m.value);
    case 'suffix': return check.endsWith(m.value);
    case 'exact': return m.value === check;
    case 'presence': return check !== '';
  }
}

function inBlock(block: string, ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  const [addr, bits] = block.split('/') as [string, string];
  if (isIP(addr) !== family) return false;
  const list = new BlockList();
  list.addSubnet(addr, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
  return list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

function fieldHolds<T>(pos: T[], neg: T[], pred: (v: T) => boolean): boolean {
  return (pos.length === 0 || pos.some(pred)) && (neg.length === 0 || !neg.some(pred));
}

/** ztunnel's Authorization::matches for one match group (src/rbac.rs). */
export function istioMatchHolds(m: IstioMatch, x: IstioInput): boolean {
  if (isEmptyMatch(m)) return false;
  const id = spiffeParts(x.principal);
  return fieldHolds(m.destinationIps, m.notDestinationIps, (b) => inBlock(b, x.destinationIp)) &&
    fieldHolds(m.sourceIps, m.notSourceIps, (b) => inBlock(b, x.sourceIp)) &&
    (m.ports.length + m.portRanges.length === 0 || m.ports.includes(x.port) || m.portRanges.some(([a, b]) => x.port >= a && x.port <= b)) &&
    fieldHolds([], m.notPorts, (p) => p === x.port) &&
    fieldHolds(m.serviceAccounts, m.notServiceAccounts, (s) => id.stripped !== null && s.namespace === id.namespace && s.serviceAccount === id.serviceAccount) &&
    fieldHolds(m.principals, m.notPrincipals, (p) => id.stripped !== null && strMatches(p, id.stripped)) &&
    fieldHolds(m.namespaces, m.notNamespaces, (p) => strMatches(p, id.namespace));
}

export function istioRuleHolds(r: IstioRule, x: IstioInput): boolean {
  return r.clauses.every((c) => c.length === 0 || c.some((m) => istioMatchHolds(m, x)));
}

export function istioApplies(p: IstioPolicy, x: IstioInput): boolean {
  switch (p.scope.kind) {
    case 'all': return true;
    case 'namespace': return x.namespace === p.scope.namespace;
    case 'services': return p.scope.hosts.includes(x.service);
  }
}

/**
 * Istio's order (authorization-policy reference): a matching DENY denies; with no ALLOW policy
 * for the destination, allow; a matching ALLOW allows; otherwise deny. AUDIT never changes it.
 */
export function evaluateIstio(policies: readonly IstioPolicy[], x: IstioInput): IstioVerdict {
  const applying = policies.filter((p) => istioApplies(p, x));
  const verdict = (enforced: IstioPolicy[]): 'allow' | 'deny' => {
    const matches = (p: IstioPolicy) => p.rules.some((r) => istioRuleHolds(r, x));
    if (enforced.some((p) => p.action === 'DENY' && matches(p))) return 'deny';
    const allows = enforced.filter((p) => p.action === 'ALLOW');
    if (allows.length === 0) return 'allow';
    return allows.some(matches) ? 'allow' : 'deny';
  };
  const audit: string[] = [];
  for (const p of applying) {
    if (p.action !== 'AUDIT' || p.dryRun) continue;
    p.rules.forEach((r, i) => { if (istioRuleHolds(r, x)) audit.push(`${p.waygateName}/${ruleName(i)}`); });
  }
  return { decision: verdict(applying.filter((p) => !p.dryRun)), dryRun: verdict(applying), audit };
}

/** The waygate rule name of Istio's `rules[i]`. */
export function ruleName(i: number): string {
  return `rule-${i}`;
}

// ---------------------------------------------------------------------------------------------
// Generated documents

/** One file to write under the output directory. */
export interface GeneratedFile {
  /** File name inside the output directory. */
  name: string;
  text: string;
}

const OTHER_PRINCIPAL = 'spiffe://cluster.local/ns/waygate-import-other/sa/other';
const OTHER_SOURCE_IP = ['192.0.2.10', '2001:db8::10'];
const OTHER_DESTINATION_IP = ['198.51.100.10', '2001:db8::20'];
const OTHER_PORT = 1;

/**
 * The waygate policy and PolicyTest files of a parsed set: `<namespace>.<name>.yaml` and
 * `<namespace>.<name>.test.yaml`, both in `policy fmt` layout. The tests run with
 * `defaultAction: ALLOW` (Istio allows what no ALLOW policy governs) and their expectations come
 * from `evaluateIstio` over the whole set, never from the generated CEL.
 */
export function generateFiles(policies: readonly IstioPolicy[]): GeneratedFile[] {
  const files: GeneratedFile[] = [];
  const anyDryRun = policies.some((p) => p.dryRun);
  for (const p of policies) {
    const base = p.waygateName;
    files.push({ name: `${base}.yaml`, text: policyText(p) });
    files.push({ name: `${base}.test.yaml`, text: testText(p, policies, anyDryRun) });
  }
  return files;
}

function importCommand(p: IstioPolicy): string {
  return p.sourceKind === 'NetworkPolicy' ? 'waygate policy import networkpolicy' : 'waygate policy import istio';
}

function header(p: IstioPolicy): string {
  const scope = p.scope.kind === 'all'
    ? (p.scope.why === 'gateway' ? 'targets the waypoint Gateway: governs every tunnel' : `in the root namespace without selector: governs every tunnel`)
    : p.scope.kind === 'namespace' ? `namespace-wide in ${p.scope.namespace}: governs tunnels to that namespace (destination.namespace)`
    : `targets ${p.scope.hosts.join(', ')} (destination.service)`;
  return [
    `# Imported from the ${p.sourceKind ?? 'Istio AuthorizationPolicy'} ${p.namespace}/${p.name}`,
    `# (${p.origin.file}:${p.origin.line}:${p.origin.col}) by \`${importCommand(p)}\`.`,
    `# Scope: ${scope}. Its ${p.rulesField ?? 'rules'}[i] is rule-i.`,
  ].join('\n') + '\n';
}

function policyText(p: IstioPolicy): string {
  const selector = scopeCel(p.scope);
  const rules = p.rules.length === 0
    ? [{ name: 'nothing', when: 'false', message: p.sourceKind === 'NetworkPolicy' ? 'NetworkPolicy without ingress rules: the selected pods accept no ingress' : `Istio: a ${p.action} policy without rules matches nothing` }]
    : p.rules.map((r, i) => ({ name: ruleName(i), when: ruleCel(r) }));
  const doc = {
    apiVersion: API_VERSION,
    kind: 'AuthorizationPolicy',
    metadata: { name: p.waygateName },
    spec: {
      action: p.action,
      ...(p.dryRun ? { mode: 'DryRun' } : {}),
      ...(selector === null ? {} : { selector }),
      rules,
    },
  };
  const text = header(p) + '\n' + stringify(doc, { lineWidth: 0 });
  return formatPolicyText(text, `${p.waygateName}.yaml`);
}

interface CaseDoc {
  name: string;
  input: Record<string, Record<string, string | number>>;
  expect: Record<string, unknown>;
}

function testText(p: IstioPolicy, all: readonly IstioPolicy[], anyDryRun: boolean): string {
  const cases: CaseDoc[] = [];
  const expectOf = (x: IstioInput) => {
    const v = evaluateIstio(all, x);
    return { decision: v.decision, ...(anyDryRun ? { dryRun: v.dryRun } : {}), audit: v.audit };
  };
  const candidates = inputCandidates(p);
  if (p.rules.length === 0) {
    const x = candidates.next().value;
    if (x !== undefined) cases.push({ name: 'a tunnel it governs (no rule matches)', input: inputDoc(x), expect: expectOf(x) });
  }
  p.rules.forEach((r, i) => {
    let yes: IstioInput | undefined;
    let no: IstioInput | undefined;
    for (const x of inputCandidates(p)) {
      const holds = istioRuleHolds(r, x);
      if (holds && yes === undefined) yes = x;
      if (!holds && no === undefined) no = x;
      if (yes !== undefined && no !== undefined) break;
    }
    if (yes !== undefined) cases.push({ name: `${ruleName(i)} matches`, input: inputDoc(yes), expect: expectOf(yes) });
    if (no !== undefined) cases.push({ name: `${ruleName(i)} does not match`, input: inputDoc(no), expect: expectOf(no) });
  });
  const doc = {
    apiVersion: API_VERSION,
    kind: 'PolicyTest',
    metadata: { name: `${p.waygateName}-tests` },
    spec: { defaultAction: 'ALLOW', cases },
  };
  const text = [
    `# Generated by \`${importCommand(p)}\` for ${p.namespace}/${p.name}: one case where each rule`,
    `# matches and one where it does not. Expected verdicts follow the ${p.sourceKind === undefined ? 'Istio' : p.sourceKind} semantics over the`,
    '# whole imported set, with defaultAction ALLOW (a tunnel no ALLOW policy governs is allowed).',
  ].join('\n') + '\n\n' + stringify(doc, { lineWidth: 0 });
  return formatPolicyText(text, `${p.waygateName}.test.yaml`);
}

function inputDoc(x: IstioInput): CaseDoc['input'] {
  const source: Record<string, string | number> = {};
  if (x.principal !== '') source['principal'] = x.principal;
  source['ip'] = x.sourceIp;
  const destination: Record<string, string | number> = { ip: x.destinationIp, port: x.port };
  if (x.service !== '') destination['service'] = x.service;
  if (x.namespace !== '') destination['namespace'] = x.namespace;
  return { source, destination };
}

function validSpiffe(s: string): boolean {
  return parseSpiffeId(s) !== null;
}

/** Inputs in the policy's scope built from the literals of its rules, plus values outside them. */
function* inputCandidates(p: IstioPolicy): Generator<IstioInput> {
  const principals = new Set<string>();
  const srcIps = new Set<string>();
  const dstIps = new Set<string>();
  const ports = new Set<number>();
  const fromString = (m: StringMatch, principal: boolean) => {
    if (principal) {
      switch (m.kind) {
        case 'exact': return [SPIFFE + m.value];
        case 'prefix': return [SPIFFE + m.value + 'x', SPIFFE + m.value + 'x/sa/default'];
        case 'suffix': return [SPIFFE + 'cluster.local/ns/x' + (m.value.startsWith('/') ? '' : '/sa/') + m.value, SPIFFE + 'cluster.local' + m.value];
        case 'presence': return ['spiffe://cluster.local/ns/default/sa/default'];
      }
    }
    switch (m.kind) {
      case 'exact': return [`spiffe://cluster.local/ns/${m.value}/sa/default`];
      case 'prefix': return [`spiffe://cluster.local/ns/${m.value}x/sa/default`];
      case 'suffix': return [`spiffe://cluster.local/ns/x${m.value}/sa/default`];
      case 'presence': return ['spiffe://cluster.local/ns/default/sa/default'];
    }
  };
  const all = p.rules.flatMap((r) => r.clauses.flat());
  for (const m of all) {
    for (const s of [...m.principals, ...m.notPrincipals]) fromString(s, true).forEach((v) => principals.add(v));
    for (const s of [...m.namespaces, ...m.notNamespaces]) fromString(s, false).forEach((v) => principals.add(v));
    for (const s of [...m.serviceAccounts, ...m.notServiceAccounts]) principals.add(`spiffe://cluster.local/ns/${s.namespace}/sa/${s.serviceAccount}`);
    for (const b of [...m.sourceIps, ...m.notSourceIps]) srcIps.add(b.split('/')[0]!);
    for (const b of [...m.destinationIps, ...m.notDestinationIps]) dstIps.add(b.split('/')[0]!);
    for (const n of [...m.ports, ...m.notPorts]) ports.add(n);
    for (const [a, b] of m.portRanges) [a, b, b + 1].filter((n) => n <= 65535).forEach((n) => ports.add(n));
  }
  principals.add(OTHER_PRINCIPAL);
  principals.add('');
  OTHER_SOURCE_IP.forEach((a) => srcIps.add(a));
  OTHER_DESTINATION_IP.forEach((a) => dstIps.add(a));
  ports.add(OTHER_PORT);
  const scopes: Array<{ service: string; namespace: string }> = p.scope.kind === 'all' ? [{ service: '', namespace: '' }]
    : p.scope.kind === 'namespace' ? [{ service: '', namespace: p.scope.namespace }]
    : p.scope.hosts.map((h) => ({ service: h, namespace: h.split('.')[1]! }));
  for (const scope of scopes) {
    for (const principal of principals) {
      if (principal !== '' && !validSpiffe(principal)) continue;
      for (const sourceIp of srcIps) for (const destinationIp of dstIps) for (const port of ports) {
        yield { principal, sourceIp, destinationIp, port, ...scope };
      }
    }
  }
}
