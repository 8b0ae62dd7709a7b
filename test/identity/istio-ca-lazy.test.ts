/**
 * The istiod CA client (src/identity/istio-ca/client.ts: @grpc/grpc-js, @grpc/proto-loader,
 * protobufjs) is loaded by the first request to istiod (src/identity/istio-ca/source.ts), never by
 * importing the gateway's runtime: every gateway process and every test that starts one imports
 * the runtime, and only `tls.istioCa` uses the client (some 120 package files to load).
 *
 * A fresh node process imports the built runtime (dist/, as bin/waygate.js does) and lists the
 * packages in require.cache; then it imports the client, so that the same listing is shown to see
 * gRPC once it is loaded (the check cannot pass by seeing nothing).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Prints the packages in require.cache after each import named on the command line. */
const PROBE = String.raw`
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const cache = createRequire(import.meta.url).cache;
/** The package of a file: the one or two (scoped) path segments after its last node_modules. */
const packageOf = (file) => {
  const parts = file.split(/[\/]/);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0) return undefined;
  return parts[i + 1].startsWith('@') ? parts[i + 1] + '/' + parts[i + 2] : parts[i + 1];
};
const out = [];
for (const file of process.argv.slice(1)) {
  await import(pathToFileURL(file).href);
  out.push([...new Set(Object.keys(cache).map(packageOf).filter(Boolean))].sort());
}
process.stdout.write(JSON.stringify(out));
`;

test('importing the gateway runtime loads no gRPC or protobuf package; the CA client does', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', PROBE, `${ROOT}dist/src/gateway/runtime.js`, `${ROOT}dist/src/identity/istio-ca/client.js`],
    { cwd: ROOT },
  );
  const [afterRuntime, afterClient] = JSON.parse(stdout) as [string[], string[]];
  const grpc = (pkgs: string[]): string[] => pkgs.filter((p) => /^@grpc\/|^protobufjs$|^@protobufjs\//.test(p));
  assert.ok(afterRuntime.includes('pino'), `the listing sees the runtime's packages: ${afterRuntime.join(', ')}`);
  assert.deepEqual(grpc(afterRuntime), [], 'loaded by importing dist/src/gateway/runtime.js');
  assert.ok(afterClient.includes('@grpc/grpc-js') && afterClient.includes('protobufjs'), `the listing sees the client's packages: ${afterClient.join(', ')}`);
});
