/**
 * The shared test audit sink (sink.ts): a wait for a record resolves on the record, and a record
 * that never comes fails the wait at its timeout with what was awaited and what arrived, instead
 * of leaving the test to hang until the runner's timeout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CloseRecord, DecisionRecord } from '../../src/audit/record.ts';
import { RecordingSink } from './sink.ts';

const decision = (streamId: number): DecisionRecord => ({ streamId, connectionId: 'c1', decisionId: `d${streamId}`, reason: 'allowed' } as unknown as DecisionRecord);

test('a wait resolves with the record once it is written, and keeps a copy', async () => {
  const sink = new RecordingSink({ waitTimeoutMs: 5_000 });
  const waiting = sink.decisionFor(3);
  const written = decision(3);
  sink.decision(written);
  const got = await waiting;
  assert.equal(got.decisionId, 'd3');
  assert.notEqual(got, written, 'the sink keeps a copy, not the caller\'s object');
});

test('a record that never comes fails the wait at its timeout, naming what was awaited and what arrived', async () => {
  const sink = new RecordingSink({ waitTimeoutMs: 50 });
  sink.decision(decision(1));
  await assert.rejects(sink.decisionFor(7), /no decision record for stream 7 within 50 ms \(seen: 1 decisions, last allowed, 0 closes, 0 reloads\)/);
  await assert.rejects(sink.closeFor('d1', { timeoutMs: 20 }), /no close record for decision d1 within 20 ms/);
  await assert.rejects(sink.until(() => sink.closes.length > 0, { what: 'close record', timeoutMs: 20 }), /no close record within 20 ms/);
  // A timed-out waiter is gone: a later record does not resolve it, and later waits still work.
  sink.close({ decisionId: 'd1' } as unknown as CloseRecord);
  assert.equal((await sink.closeFor('d1')).decisionId, 'd1');
});
