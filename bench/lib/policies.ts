/**
 * Policy sets of the benchmark, generated so their size is exact. The filler rules have the shape
 * real mesh policies have (one principal and one port per rule: equality-keyed, what the engine
 * indexes); the load generator's identity is allowed by the last rule, so nothing short-circuits.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface BenchPolicyOptions {
  /** Total number of rules, the load generator's allow rules included. */
  rules: number;
  /** Rules per AuthorizationPolicy document (several documents per file). */
  rulesPerPolicy?: number;
  /** Destination ports the load generator is allowed to reach; default any port on 127.0.0.1. */
  allowPorts?: number[];
  /** Varies the filler so two sets of the same size have different hashes (a reload must apply). */
  salt?: string;
  /**
   * Splits the documents over this many files (`bench-000.yaml`, ...; the load generator's rule is
   * in the last one) instead of one `bench.yaml`, as a set maintained by several teams would be.
   */
  files?: number;
  /** Per-file salt overrides (file index -> salt), to change one file and leave the others byte-identical. */
  fileSalts?: ReadonlyMap<number, string>;
  /**
   * The load generator's rule (CEL); default: namespace bench to 127.0.0.1 (on `allowPorts`). The
   * waypoint scenario allows its service instead: with discovery the `:authority` is a VIP.
   */
  loadgenWhen?: string;
}

/** Writes the set into `dir` (`bench.yaml`, or `files` files), replacing any policy file there; returns the first file. */
export function writeBenchPolicies(dir: string, opts: BenchPolicyOptions): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = renderBenchPolicies(opts);
  for (const f of files) writeFileSync(path.join(dir, f.name), f.text);
  return path.join(dir, files[0]!.name);
}

/**
 * Replaces one policy file the way docs/operating.md ("Updating policies safely") asks an operator
 * to: the new set (one file, `opts.files` unset) is written to a temporary name beside it (hidden,
 * not `*.yaml`: the watcher and the loader ignore it) and renamed over `file`. Nothing else in the
 * directory is touched (an audit log may live there). Returns once `rename(2)` has returned.
 */
export function replaceBenchPolicyFile(file: string, opts: BenchPolicyOptions): void {
  const [only] = renderBenchPolicies({ ...opts, files: undefined });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  writeFileSync(tmp, only!.text);
  renameSync(tmp, file);
}

/** The set's files, names relative to the policy directory, in load order. */
export function renderBenchPolicies(opts: BenchPolicyOptions): { name: string; text: string }[] {
  const perPolicy = opts.rulesPerPolicy ?? 100;
  const fillers = opts.rules - 1;
  const docCount = Math.floor(fillers / perPolicy) + 1;
  const fileCount = Math.max(1, Math.min(opts.files ?? 1, docCount));
  const fileOf = (doc: number): number => Math.floor((doc * fileCount) / docCount);
  const saltOf = (doc: number): string => opts.fileSalts?.get(fileOf(doc)) ?? opts.salt ?? 'a';
  const docs: string[] = [];
  let lines: string[] = [];
  let docIndex = 0;
  const startDoc = (i: number) => {
    lines = [
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      `metadata: { name: bench-${saltOf(i)}-${i} }`,
      'spec:',
      '  action: ALLOW',
      '  rules:',
    ];
  };
  startDoc(docIndex);
  let inDoc = 0;
  for (let i = 0; i < fillers; i++) {
    if (inDoc === perPolicy) {
      docs.push(lines.join('\n'));
      startDoc(++docIndex);
      inDoc = 0;
    }
    lines.push(
      `    - name: svc-${i}`,
      `      when: source.principal == "spiffe://cluster.local/ns/team-${saltOf(docIndex)}-${i}/sa/svc" && destination.port == ${10000 + (i % 50000)}`,
    );
    inDoc++;
  }
  if (inDoc === perPolicy) {
    docs.push(lines.join('\n'));
    startDoc(++docIndex);
  }
  const ports = opts.allowPorts;
  const portCheck = ports ? ` && destination.port in [${ports.join(', ')}]` : '';
  lines.push('    - name: loadgen', `      when: ${opts.loadgenWhen ?? `source.namespace == "bench" && destination.ip == "127.0.0.1"${portCheck}`}`);
  docs.push(lines.join('\n'));
  if (opts.files === undefined) return [{ name: 'bench.yaml', text: docs.join('\n---\n') + '\n' }];
  const byFile: string[][] = Array.from({ length: fileCount }, () => []);
  docs.forEach((d, i) => byFile[fileOf(i)]!.push(d));
  return byFile.map((list, f) => ({ name: `bench-${String(f).padStart(3, '0')}.yaml`, text: list.join('\n---\n') + '\n' }));
}
