/**
 * What `waygate certs init|issue` do: create the development CA, issue workload certificates
 * (src/cli/certs.ts registers the commands and their exit codes, and loads this module when one runs).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { WaygateError } from '../errors.ts';
import { caFilePaths, createCa, issueLeaf, readCaFiles, writeCaFiles, type IssuedCert } from '../identity/dev-ca.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { DEFAULT_LEAF_DAYS, type InitOptions, type IssueOptions } from './certs.ts';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.ts';
import { stderr, stdout } from './output.ts';
import { writeData } from './write-data.ts';

const INTERMEDIATE = 'intermediate';




// RFC 1123 host names, plus a leading wildcard label.
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A problem with the invocation: printed as `waygate certs <verb>: message`, exit 2. */
class UsageProblem extends Error {}

function fail(verb: string, message: string, exitCode: number): void {
  stderr().write(`waygate certs ${verb}: ${message}\n`);
  process.exitCode = exitCode;
}

function writePrivate(path: string, data: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

function writePublic(path: string, data: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** `ns-sa` for Istio IDs, the path with '/' as '-' otherwise: a readable, collision-free file stem. */
function fileStem(path: string, namespace: string, serviceAccount: string): string {
  return namespace && serviceAccount ? `${namespace}-${serviceAccount}` : path.replace(/\//g, '-');
}



function initCa(opts: InitOptions): void {
  const trustDomain = opts.trustDomain;
  if (!parseSpiffeId(`spiffe://${trustDomain}`)) {
    throw new UsageProblem(`invalid trust domain "${trustDomain}": use lower-case letters, digits, '.', '-' and '_' (SPIFFE ID spec §2.1)`);
  }
  const paths = caFilePaths(opts.dir);
  if (existsSync(paths.cert) && !opts.force) {
    fail('init', `${paths.cert} already exists; use --force to replace the CA (every certificate it issued stops being trusted)`, EXIT_FAILURE);
    return;
  }
  // A new root orphans the old intermediate: remove it so `issue --intermediate` makes a fresh one.
  const inter = caFilePaths(opts.dir, INTERMEDIATE);
  for (const f of [inter.cert, inter.key, inter.chain]) rmSync(f, { force: true });
  const ca = createCa({ trustDomain });
  writeCaFiles(opts.dir, ca);
  if (opts.output !== 'text') {
    writeData({ spiffeId: ca.spiffeId, notAfter: ca.notAfter.toISOString(), certificate: paths.cert, privateKey: paths.key, trustBundle: paths.root }, opts.output);
    return;
  }
  stdout().write(
    [
      `created root CA ${ca.spiffeId} (valid until ${ca.notAfter.toISOString()})`,
      `  certificate   ${paths.cert}`,
      `  private key   ${paths.key} (mode 0600)`,
      `  trust bundle  ${paths.root}`,
      `next: waygate certs issue spiffe://${trustDomain}/ns/<namespace>/sa/<service-account> --dir ${opts.dir}`,
      '',
    ].join('\n'),
  );
}


/** The intermediate CA under `dir`, created (signed by the root) on first use. */
function intermediateCa(dir: string, root: IssuedCert): { ca: IssuedCert; created: boolean } {
  if (existsSync(caFilePaths(dir, INTERMEDIATE).cert)) {
    const ca = readCaFiles(dir, INTERMEDIATE);
    return { ca, created: false };
  }
  const ca = createCa({ parent: root, pathLen: 0 });
  // writeCaFiles also (re)writes root.crt from ca.caPem, which is the same root.
  writeCaFiles(dir, ca, INTERMEDIATE);
  return { ca, created: true };
}

function issueCertificate(spiffeId: string, opts: IssueOptions): void {
  const id = parseSpiffeId(spiffeId);
  if (!id) {
    throw new UsageProblem(
      `"${spiffeId}" is not a valid SPIFFE ID; expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> (lower-case trust domain, no empty, "." or ".." path segments)`,
    );
  }
  if (id.path === '') throw new UsageProblem(`"${spiffeId}" names a trust domain, not a workload: add a path such as /ns/default/sa/app`);
  if ((opts.cert === undefined) !== (opts.key === undefined)) throw new UsageProblem('--cert and --key go together');
  if (opts.cert !== undefined && opts.outDir !== undefined) throw new UsageProblem('use either --out-dir or --cert/--key, not both');
  for (const ip of opts.ip ?? []) {
    if (isIP(ip) === 0) throw new UsageProblem(`--ip "${ip}" is not an IPv4 or IPv6 address`);
  }
  for (const name of opts.dns ?? []) {
    if (!DNS_NAME.test(name) || name.length > 253) throw new UsageProblem(`--dns "${name}" is not a valid DNS name`);
  }
  let root: IssuedCert;
  try {
    root = readCaFiles(opts.dir);
  } catch (err) {
    throw new UsageProblem(err instanceof Error ? err.message : String(err));
  }
  const caDomain = root.spiffeId ? parseSpiffeId(root.spiffeId)?.trustDomain : undefined;
  if (caDomain !== undefined && caDomain !== id.trustDomain) {
    throw new UsageProblem(`${spiffeId} is in trust domain "${id.trustDomain}", but the CA in ${opts.dir} issues for "${caDomain}"`);
  }
  let issuer = root;
  let createdIntermediate = false;
  if (opts.intermediate) {
    const got = intermediateCa(opts.dir, root);
    issuer = got.ca;
    createdIntermediate = got.created;
  }
  const days = opts.days ?? DEFAULT_LEAF_DAYS;
  const leaf = issueLeaf({
    ca: issuer,
    spiffeId,
    dnsNames: opts.dns ?? [],
    ips: opts.ip ?? [],
    validityHours: days * 24,
  });
  const stem = fileStem(id.path, id.namespace, id.serviceAccount);
  const outDir = opts.outDir ?? opts.dir;
  const certFile = opts.cert ?? join(outDir, `${stem}.crt`);
  const keyFile = opts.key ?? join(outDir, `${stem}.key`);
  // The certificate file holds the chain (leaf, then intermediate): what a TLS peer must present.
  writePublic(certFile, leaf.chainPem);
  writePrivate(keyFile, leaf.keyPem);
  if (opts.output !== 'text') {
    writeData({
      spiffeId,
      notAfter: leaf.notAfter.toISOString(),
      signedBy: opts.intermediate ? 'intermediate' : 'root',
      certificate: certFile,
      privateKey: keyFile,
      trustBundle: caFilePaths(opts.dir).root,
      ...(createdIntermediate ? { createdIntermediate: caFilePaths(opts.dir, INTERMEDIATE).cert } : {}),
    }, opts.output);
    return;
  }
  const lines = [
    `issued ${spiffeId} (valid until ${leaf.notAfter.toISOString()}, signed by the ${opts.intermediate ? 'intermediate' : 'root'} CA)`,
  ];
  if (createdIntermediate) lines.push(`  created intermediate CA ${caFilePaths(opts.dir, INTERMEDIATE).cert}`);
  lines.push(
    `  certificate   ${certFile}${opts.intermediate ? ' (leaf + intermediate)' : ''}`,
    `  private key   ${keyFile} (mode 0600)`,
    `  trust bundle  ${caFilePaths(opts.dir).root}`,
    '',
  );
  stdout().write(lines.join('\n'));
}

function guarded(verb: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (err instanceof UsageProblem || err instanceof WaygateError) {
      fail(verb, err.message, EXIT_USAGE);
      return;
    }
    throw err;
  }
}

/** `waygate certs init`: the exit code is left in process.exitCode. */
export function runInit(opts: InitOptions): void {
  guarded('init', () => initCa(opts));
}

/** `waygate certs issue <spiffe-id>`: the exit code is left in process.exitCode. */
export function runIssue(spiffeId: string, opts: IssueOptions): void {
  guarded('issue', () => issueCertificate(spiffeId, opts));
}
