/**
 * Policy sets of the benchmark, generated so their size is exact. The filler rules have the shape
 * real mesh policies have (one principal and one port per rule: equality-keyed, what the engine
 * indexes); the load generator's identity is allowed by the last rule, so nothing short-circuits.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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
}

/** Writes `bench.yaml` into `dir`, replacing any policy file there. */
export function writeBenchPolicies(dir: string, opts: BenchPolicyOptions): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const perPolicy = opts.rulesPerPolicy ?? 100;
  const salt = opts.salt ?? 'a';
  const fillers = opts.rules - 1;
  const docs: string[] = [];
  let lines: string[] = [];
  const startDoc = (i: number) => {
    lines = [
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      `metadata: { name: bench-${salt}-${i} }`,
      'spec:',
      '  action: ALLOW',
      '  rules:',
    ];
  };
  let docIndex = 0;
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
      `      when: source.principal == "spiffe://cluster.local/ns/team-${salt}-${i}/sa/svc" && destination.port == ${10000 + (i % 50000)}`,
    );
    inDoc++;
  }
  if (inDoc === perPolicy) {
    docs.push(lines.join('\n'));
    startDoc(++docIndex);
  }
  const ports = opts.allowPorts;
  const portCheck = ports ? ` && destination.port in [${ports.join(', ')}]` : '';
  lines.push('    - name: loadgen', `      when: source.namespace == "bench" && destination.ip == "127.0.0.1"${portCheck}`);
  docs.push(lines.join('\n'));
  const file = path.join(dir, 'bench.yaml');
  writeFileSync(file, docs.join('\n---\n') + '\n');
  return file;
}
