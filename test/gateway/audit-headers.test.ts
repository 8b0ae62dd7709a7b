/**
 * Regression: decision records must carry every header the snapshot in force reads by name, so
 * `waygate audit replay` re-decides exactly (docs/design.md §4). Before the fix only the configured
 * allow-list was recorded, and replaying the example policies against their own log "flipped" a
 * decision that depended on `x-tenant`.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { spiffe } from '../helpers/pki.ts';
import { startTestGateway, type TestGateway } from './fixture.ts';

let upstream: Upstream;
let t: TestGateway;
before(async () => {
  upstream = await startUpstream('echo');
  t = await startTestGateway({
    policies: {
      'tenant.yaml': [
        'apiVersion: waygate.dev/v1alpha1',
        'kind: AuthorizationPolicy',
        'metadata: { name: tenant }',
        'spec:',
        '  action: ALLOW',
        '  rules:',
        '    - name: acme',
        `      when: source.principal == "${spiffe('api', 'prod')}" && "x-tenant" in request.headers && request.headers["x-tenant"] == "acme"`,
        '',
      ].join('\n'),
    },
  });
});
after(async () => {
  await t.close();
  await upstream.close();
});

test('headers the policies read are recorded beside the allow-list; others are not; secrets stay redacted', async () => {
  const client = await t.connect('api');
  const tunnel = await client.openTunnel(`127.0.0.1:${upstream.port}`, {
    'x-tenant': 'acme',
    'x-unread': 'never recorded',
    authorization: 'Bearer secret',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  });
  assert.equal(tunnel.status, 200);
  await t.sink.until(() => t.sink.decisions.length > 0);
  const record = t.sink.decisions[0]!;
  assert.equal(record.headers['x-tenant'], 'acme');
  assert.equal(record.headers['traceparent'], '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  assert.equal(record.headers['x-unread'], undefined);
  assert.equal(record.headers['authorization'], undefined);
  tunnel.stream.destroy();
});
