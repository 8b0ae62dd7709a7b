/**
 * Child process for the audit logger's stdout test: writes N records to stdout through the pino
 * sink, then exits with process.exit() right after flushing (mode `async`: await flush(); mode
 * `sync`: flushSync(), the exit-path variant). Lines lost in the buffer would show up as missing.
 * Usage: node --import tsx test/helpers/audit-logger-child.ts <count> <async|sync>
 */
import { createAuditLogger } from '../../src/audit/logger.ts';
import { sampleRecord } from './audit-samples.ts';

const count = Number(process.argv[2] ?? '1000');
const mode = process.argv[3] ?? 'async';
const sink = createAuditLogger({ destination: '-' });
for (let i = 0; i < count; i++) {
  const r = sampleRecord(i);
  if (r.event === 'decision') sink.decision(r);
  else if (r.event === 'close') sink.close(r);
  else sink.reload(r);
}
if (mode === 'sync') sink.flushSync();
else await sink.flush();
process.exit(0);
