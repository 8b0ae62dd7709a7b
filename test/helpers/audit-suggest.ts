/**
 * What the `audit suggest` tests share (test/audit/suggest.test.ts, suggest-regressions.test.ts):
 * the shape of its JSON report, and a second, independent read of the log by `audit replay`.
 */
import assert from 'node:assert/strict';
import type { ReplayResult } from '../../src/audit/review/replay.ts';
import type { SuggestResult } from '../../src/audit/review/suggest.ts';
import { runAuditReplay } from '../../src/cli/audit.ts';
import { captureIo } from './audit-io.ts';

/** `audit suggest --format json`'s report. */
export interface SuggestJson {
  out: string;
  kept: { path: string; from: string; policies: string[] }[];
  suggestion: Omit<SuggestResult, 'files'>;
  replay: ReplayResult;
}

/** `audit replay --policies out log`: a second, independent read of the log against what suggest wrote. */
export async function replayAgain(log: string, out: string): Promise<ReplayResult> {
  const io = captureIo();
  const code = await runAuditReplay([log], { policies: [out], format: 'json' }, io);
  assert.equal(code, 0, io.stderrText());
  return JSON.parse(io.stdoutText()) as ReplayResult;
}
