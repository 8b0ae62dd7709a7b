/**
 * Child process of bench/audit-summary.bench.ts: runs `waygate audit summary --format json` on one
 * file in its own process, so its peak RSS (process.resourceUsage().maxRSS) is the summary's alone,
 * then prints one JSON line: {scanMs, maxRssKiB, retainedHeapKiB, records, deny}.
 * Usage: node --expose-gc --import tsx test/helpers/audit-bench-child.ts <file>
 */
import { Writable } from 'node:stream';
import { runAuditSummary } from '../../src/cli/audit.ts';

const file = process.argv[2];
if (!file) throw new Error('usage: audit-bench-child.ts <file>');
let out = '';
const stdout = new Writable({
  write(chunk: Buffer, _enc, cb) {
    out += chunk.toString();
    cb();
  },
});
const started = performance.now();
const code = await runAuditSummary([file], { format: 'json' }, { stdout, stderr: process.stderr, stdin: process.stdin });
const scanMs = performance.now() - started;
if (code !== 0) process.exit(code);
const s = JSON.parse(out) as { input: { records: number }; decisions: { deny: number } };
// Retained heap after a full GC (run with --expose-gc): what the summary keeps, as opposed to the
// garbage V8 lets accumulate before collecting, which is what peak RSS also contains.
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const retainedHeapKiB = gc ? Math.round(process.memoryUsage().heapUsed / 1024) : null;
process.stdout.write(JSON.stringify({ scanMs, maxRssKiB: process.resourceUsage().maxRSS, retainedHeapKiB, records: s.input.records, deny: s.decisions.deny }) + '\n');
