/**
 * `waygate certs init|issue`: a development PKI for trying the gateway without a mesh CA.
 *
 *   waygate certs init  [--dir .waygate/pki] [--trust-domain cluster.local] [--force]
 *   waygate certs issue <spiffe-id> [--dir D] [--out-dir D | --cert F --key F] [--dns N]... [--ip A]...
 *                       [--days N] [--intermediate]
 *
 * Exit codes (src/cli/main.ts): 0 written, 1 refused to overwrite an existing CA, 2 bad input
 * (invalid SPIFFE ID, wrong trust domain, missing CA, bad flag).
 *
 * This module builds the commands; what they do is src/cli/certs-run.ts, loaded when one runs, so
 * that no other verb loads the CA code and node-forge (docs/architecture.md, "Adding a CLI verb").
 */
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.ts';
import { addOutputOption, type OutputFormat } from './output.ts';

const DEFAULT_DIR = '.waygate/pki';
export const DEFAULT_LEAF_DAYS = 30;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveDays(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of days, got "${value}"`);
  return n;
}

/** What init and issue print: lines of text, or the same fields as one JSON or YAML document (src/cli/certs-run.ts). */
const CERTS_OUTPUTS = ['text', 'json', 'yaml'] as const satisfies readonly OutputFormat[];
type CertsOutput = (typeof CERTS_OUTPUTS)[number];

export interface InitOptions {
  dir: string;
  trustDomain: string;
  force?: boolean;
  output: CertsOutput;
}

export interface IssueOptions {
  dir: string;
  outDir?: string;
  cert?: string;
  key?: string;
  dns?: string[];
  ip?: string[];
  days?: number;
  intermediate?: boolean;
  output: CertsOutput;
}

/** Registers `waygate certs init|issue`. */
export function registerCerts(program: Command): void {
  const certs = program.command('certs').description('development PKI: a SPIFFE CA and workload certificates (ECDSA P-256)');

  const init = certs
    .command('init')
    .description('create a root CA for a trust domain')
    .option('--dir <dir>', 'where to write the CA', DEFAULT_DIR)
    .option('--trust-domain <td>', 'SPIFFE trust domain', DEFAULT_TRUST_DOMAIN)
    .option('--force', 'replace an existing CA');
  addOutputOption(init, CERTS_OUTPUTS).action(async (opts: InitOptions) => (await import('./certs-run.ts')).runInit(opts));

  const issue = certs
    .command('issue')
    .description('issue a workload certificate whose URI SAN is <spiffe-id>')
    .argument('<spiffe-id>', 'e.g. spiffe://cluster.local/ns/default/sa/app')
    .option('--dir <dir>', 'the CA directory (from certs init)', DEFAULT_DIR)
    .option('--out-dir <dir>', 'write <ns>-<sa>.crt/.key here (default: the CA directory)')
    .option('--cert <file>', 'certificate (chain) output file')
    .option('--key <file>', 'private key output file')
    .option('--dns <name>', 'DNS SAN (repeatable)', collect)
    .option('--ip <addr>', 'IP SAN (repeatable)', collect)
    .option('--days <n>', `validity in days (default ${DEFAULT_LEAF_DAYS})`, positiveDays)
    .option('--intermediate', 'sign with an intermediate CA (created on first use), as mesh CAs do');
  addOutputOption(issue, CERTS_OUTPUTS).action(async (spiffeId: string, opts: IssueOptions) => (await import('./certs-run.ts')).runIssue(spiffeId, opts));
}
