import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { identityFromCertificate } from '../../src/identity/peer-identity.ts';
import { loadTlsMaterial } from '../../src/identity/tls-material.ts';
import { runCli } from '../helpers/cli.ts';

const BIN = resolve(import.meta.dirname, '../../bin/waygate.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI in a child process, so exit codes are the ones a shell sees. */
function waygate(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

describe('waygate certs', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'waygate-certs-cli-'));
  after(() => rmSync(cwd, { recursive: true, force: true }));
  const pki = join(cwd, '.waygate/pki');

  it('init writes a root CA into .waygate/pki by default and refuses to overwrite it', async () => {
    const r = await waygate(['certs', 'init'], cwd);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created root CA spiffe:\/\/cluster\.local/);
    assert.match(r.stdout, /\.waygate\/pki\/ca\.key \(mode 0600\)/);
    const ca = new X509Certificate(readFileSync(join(pki, 'ca.crt')));
    assert.equal(ca.ca, true);
    assert.deepEqual(identityFromCertificate(ca.raw).uris, ['spiffe://cluster.local']);
    assert.equal(statSync(join(pki, 'ca.key')).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(pki, 'root.crt'), 'utf8'), readFileSync(join(pki, 'ca.crt'), 'utf8'));

    const again = await waygate(['certs', 'init'], cwd);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ca\.crt already exists; use --force/);
    assert.equal(new X509Certificate(readFileSync(join(pki, 'ca.crt'))).fingerprint256, ca.fingerprint256, 'the CA was kept');

    const forced = await waygate(['certs', 'init', '--force'], cwd);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(new X509Certificate(readFileSync(join(pki, 'ca.crt'))).fingerprint256, ca.fingerprint256);
  });

  it('issue writes a workload certificate that loads as TLS material against the root', async () => {
    const r = await waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/api', '--dns', 'localhost', '--ip', '127.0.0.1', '--days', '2'], cwd);
    assert.equal(r.code, 0, r.stderr);
    const certFile = join(pki, 'prod-api.crt');
    const keyFile = join(pki, 'prod-api.key');
    assert.match(r.stdout, /issued spiffe:\/\/cluster\.local\/ns\/prod\/sa\/api/);
    assert.ok(r.stdout.includes(certFile.replace(cwd + '/', '')), r.stdout);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const m = loadTlsMaterial({ certFile, keyFile, trustBundleFiles: [join(pki, 'root.crt')] });
    const id = identityFromCertificate(m.leaf.raw);
    assert.equal(id.spiffeId?.id, 'spiffe://cluster.local/ns/prod/sa/api');
    assert.match(m.leaf.subjectAltName ?? '', /DNS:localhost/);
    assert.match(m.leaf.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    const days = (m.notAfter.getTime() - new Date(m.leaf.validFrom).getTime()) / 86_400_000;
    assert.equal(days, 2);
  });

  it('issue --intermediate creates an intermediate once and writes leaf + intermediate', async () => {
    const out = join(cwd, 'out');
    const r = await waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/web', '--intermediate', '--out-dir', out], cwd);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created intermediate CA/);
    const chain = readFileSync(join(out, 'prod-web.crt'), 'utf8');
    assert.equal(chain.split('-----BEGIN CERTIFICATE-----').length - 1, 2);
    loadTlsMaterial({ certFile: join(out, 'prod-web.crt'), keyFile: join(out, 'prod-web.key'), trustBundleFiles: [join(pki, 'root.crt')] });

    const second = await waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/db', '--intermediate', '--cert', join(cwd, 'db.pem'), '--key', join(cwd, 'db-key.pem')], cwd);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stdout, /created intermediate CA/);
    const m = loadTlsMaterial({ certFile: join(cwd, 'db.pem'), keyFile: join(cwd, 'db-key.pem'), trustBundleFiles: [join(pki, 'root.crt')] });
    assert.equal(identityFromCertificate(m.leaf.raw).spiffeId?.id, 'spiffe://cluster.local/ns/prod/sa/db');
  });

  it('issue rejects a bad SPIFFE ID with exit 2 (real process)', async () => {
    const r = await waygate(['certs', 'issue', 'spiffe://cluster.local/ns//sa/x'], cwd);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^waygate certs issue: "spiffe:\/\/cluster\.local\/ns\/\/sa\/x" is not a valid SPIFFE ID/);
    assert.equal(r.stdout, '');
  });

  // The rest of the refusals run in-process (test/helpers/cli.ts runCli: a child process per case
  // costs ~0.5 s of CPU loading the CLI): the same main(), output captured, exit code read and reset.
  const rejects: Array<{ name: string; args: string[]; message: RegExp }> = [
    { name: 'an upper-case trust domain', args: ['spiffe://Cluster.local/ns/a/sa/b'], message: /is not a valid SPIFFE ID/ },
    { name: 'not a SPIFFE URI', args: ['https://cluster.local/ns/a/sa/b'], message: /is not a valid SPIFFE ID/ },
    { name: 'a trust-domain-only ID', args: ['spiffe://cluster.local'], message: /names a trust domain, not a workload/ },
    { name: 'another trust domain than the CA', args: ['spiffe://other.domain/ns/a/sa/b'], message: /trust domain "other\.domain", but the CA .* issues for "cluster\.local"/ },
    { name: 'a bad --ip', args: ['spiffe://cluster.local/ns/a/sa/b', '--ip', '300.1.1.1'], message: /--ip "300\.1\.1\.1" is not an IPv4 or IPv6 address/ },
    { name: 'a bad --dns', args: ['spiffe://cluster.local/ns/a/sa/b', '--dns', 'bad_name!'], message: /--dns "bad_name!" is not a valid DNS name/ },
    { name: '--cert without --key', args: ['spiffe://cluster.local/ns/a/sa/b', '--cert', 'x.pem'], message: /--cert and --key go together/ },
    { name: 'a missing CA', args: ['spiffe://cluster.local/ns/a/sa/b', '--dir', 'nowhere'], message: /nowhere\/ca\.crt: not found/ },
  ];
  for (const c of rejects) {
    it(`issue rejects ${c.name} with exit 2 and writes nothing`, async () => {
      const r = await runCli(['certs', 'issue', ...c.args, ...(c.args.includes('--dir') ? [] : ['--dir', pki])]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^waygate certs issue: /);
      assert.match(r.stderr, c.message);
      assert.equal(r.stdout, '');
      assert.equal(existsSync(join(pki, 'a-b.crt')), false);
    });
  }

  it('init rejects an invalid trust domain with exit 2', async () => {
    const r = await waygate(['certs', 'init', '--dir', 'elsewhere', '--trust-domain', 'Not Valid'], cwd);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalid trust domain "Not Valid"/);
    assert.equal(existsSync(join(cwd, 'elsewhere', 'ca.crt')), false);
  });
});
