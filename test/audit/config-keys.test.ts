/**
 * The audit durability keys of the gateway config (docs/operating.md, "Audit log guarantees"):
 * `audit.sync` and `audit.onFailure`, their defaults, and what the loader refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';
import { productionDefaults } from '../../src/config/schema.ts';

const doc = (audit: string): string => `apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n  audit: ${audit}\n`;

test('defaults: sync none, onFailure by destination (null)', () => {
  const d = productionDefaults({});
  assert.equal(d.audit.sync, 'none');
  assert.equal(d.audit.onFailure, null);
});

test('audit.sync and audit.onFailure load; null onFailure (as --print-config shows it) loads back', () => {
  for (const sync of ['none', 'batch', 'always'] as const) {
    for (const onFailure of ['deny', 'allow', null] as const) {
      const spec = parseConfigText(doc(`{ destination: "-", sync: ${sync}, onFailure: ${onFailure} }`), '/tmp/gateway.yaml');
      assert.equal(spec.audit?.sync, sync);
      assert.equal(spec.audit?.onFailure, onFailure);
    }
  }
});

test('other values are errors naming the field and the choices', () => {
  assert.throws(() => parseConfigText(doc('{ sync: fsync }'), '/tmp/gateway.yaml'), (e: unknown) => e instanceof ConfigError && /spec\.audit\.sync/.test(e.message) && /none, batch, always/.test(e.message));
  assert.throws(() => parseConfigText(doc('{ onFailure: drop }'), '/tmp/gateway.yaml'), (e: unknown) => e instanceof ConfigError && /spec\.audit\.onFailure/.test(e.message) && /deny, allow/.test(e.message));
});
