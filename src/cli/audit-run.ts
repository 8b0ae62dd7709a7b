/**
 * What `waygate audit summary|query|replay|report|suggest` do (src/cli/audit.ts registers them,
 * declares their flags and exit codes, and loads this module when one runs).
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WaygateError } from '../errors.ts';
import { loadPolicySet } from '../policy/load.ts';
import type { PolicySnapshot } from '../policy/snapshot.ts';
import { ALL_EVENTS, compileQuery, QueryWriter, type AuditEvent, type QueryFormat } from '../audit/review/query.ts';
import { describeIssues, newReadStats, noRecordsHeadline, readRecordBatches, resolveSources, type ReadOptions, type ReadStats } from '../audit/review/reader.ts';
import { renderReplay, ReplayAccumulator } from '../audit/review/replay.ts';
import { renderHtmlReport, ReportAccumulator } from '../audit/review/report.ts';
import { keptPolicyFiles, RecordInputs, renderSuggest, ReplayStore, SuggestAccumulator, type KeptFile, type SuggestResult } from '../audit/review/suggest.ts';
import { catalogFromSnapshot, renderSummary, SummaryAccumulator } from '../audit/review/summary.ts';
import { parseTimeBound } from '../audit/review/time.ts';
import { TABLE_DEFAULT_LIMIT, type AuditIo, type QueryFlags, type ReplayFlags, type ReportFlags, type SuggestFlags, type SummaryFlags, type TimeWindowFlags } from './audit.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.ts';
import { formatDiagnosticLine, styleFor } from './output.ts';
import { writeData } from './write-data.ts';
import { didYouMean } from '../util/suggest.ts';


function defaultIo(): AuditIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

function window(flags: TimeWindowFlags, io: AuditIo): { sinceMs: number | null; untilMs: number | null } {
  const now = (io.now ?? Date.now)();
  return {
    sinceMs: flags.since !== undefined ? parseTimeBound(flags.since, now, '--since') : null,
    untilMs: flags.until !== undefined ? parseTimeBound(flags.until, now, '--until') : null,
  };
}

function readOptions(io: AuditIo): ReadOptions {
  return { stdin: io.stdin, progress: io.stderr };
}

/** Loads a policy set or throws a usage error listing every diagnostic. */
async function loadPolicies(paths: readonly string[], io: AuditIo): Promise<{ snapshot: PolicySnapshot; files: string[] }> {
  const result = await loadPolicySet(paths, { version: 1 });
  if (!result.ok) {
    const style = styleFor(io.stderr);
    for (const d of result.diagnostics) io.stderr.write(formatDiagnosticLine(d, style) + '\n');
    throw new WaygateError('WG_USAGE', `the policy set in ${paths.join(', ')} does not load (${result.diagnostics.length} problem(s) above)`);
  }
  return { snapshot: result.snapshot, files: result.files };
}

/**
 * An input without a single audit record is an input error (exit 2, one headline), not a report
 * of zeros: the wrong file, an empty one, or only the gateway's operational log.
 */
function assertRecords(stats: ReadStats): void {
  const headline = noRecordsHeadline(stats);
  if (headline !== null) throw new WaygateError('WG_USAGE', headline);
}

/** Runs a verb body, mapping WaygateErrors to a message on stderr and exit code 2. */
async function guarded(io: AuditIo, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof WaygateError) {
      io.stderr.write(`waygate audit: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}

/**
 * Output with backpressure (awaits 'drain' when the reader is slow: `query | less`) that notices
 * when the reader went away (`query | head` closes the pipe: EPIPE), so a scan stops instead of
 * crashing on an unhandled stream error or waiting forever for a 'drain' that never comes.
 */
class Output {
  gone = false;
  constructor(private readonly stream: NodeJS.WritableStream) {
    const onGone = (err?: NodeJS.ErrnoException) => {
      if (err && err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') return;
      this.gone = true;
    };
    stream.on('error', onGone);
    stream.on('close', () => onGone());
  }

  async write(text: string): Promise<void> {
    if (text === '' || this.gone) return;
    if (this.stream.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
      this.stream.on('error', done);
    });
  }
}

async function writeOut(stream: NodeJS.WritableStream, text: string): Promise<void> {
  await new Output(stream).write(text);
}

// ---------------------------------------------------------------------------------------------

/** `waygate audit summary [paths...]`. */
export function runAuditSummary(paths: string[], flags: SummaryFlags, io: AuditIo = defaultIo()): Promise<number> {
  return guarded(io, async () => {
    const win = window(flags, io);
    const catalog = flags.policies?.length ? catalogFromSnapshot((await loadPolicies(flags.policies, io)).snapshot) : null;
    const sources = await resolveSources(paths, readOptions(io));
    const stats = newReadStats();
    const acc = new SummaryAccumulator({ catalog, ...win, top: flags.top ?? 10 });
    for await (const batch of readRecordBatches(sources, stats, readOptions(io))) {
      for (let i = 0; i < batch.length; i++) acc.add(batch[i]!);
    }
    assertRecords(stats);
    const summary = acc.result(stats);
    if (flags.format === 'json' || flags.format === 'yaml') writeData(summary, flags.format, io.stdout);
    else await writeOut(io.stdout, renderSummary(summary, flags.format === 'markdown' ? 'markdown' : 'text'));
    return EXIT_OK;
  });
}

/** `waygate audit query [paths...]`. */
export function runAuditQuery(paths: string[], flags: QueryFlags, io: AuditIo = defaultIo()): Promise<number> {
  return guarded(io, async () => {
    const format: QueryFormat = flags.format ?? 'table';
    const events = expandEvents(flags.event);
    // Compile (and type-check --where) before touching the input: a typo fails fast.
    const query = compileQuery({
      events,
      decision: flags.decision,
      reasons: splitList(flags.reason),
      principal: flags.principal,
      namespaces: splitList(flags.namespace),
      policy: flags.policy,
      rule: flags.rule,
      destination: flags.destination,
      where: flags.where,
      ...window(flags, io),
    });
    const limit = flags.limit ?? (format === 'table' ? TABLE_DEFAULT_LIMIT : Infinity);
    const sources = await resolveSources(paths, readOptions(io));
    const stats = newReadStats();
    const out = new Output(io.stdout);
    let pending = '';
    const writer = new QueryWriter(format, { write: (s: string) => (pending += s) });
    let limited = false;
    scan: for await (const batch of readRecordBatches(sources, stats, readOptions(io))) {
      for (let i = 0; i < batch.length; i++) {
        const rec = batch[i]!;
        if (!query.test(rec)) continue;
        if (writer.count >= limit) {
          limited = true;
          break scan;
        }
        writer.write(rec);
      }
      await out.write(pending);
      pending = '';
      if (out.gone) break; // the reader closed the pipe (`| head`): stop reading the input
    }
    assertRecords(stats);
    writer.end();
    await out.write(pending);
    if (limited) io.stderr.write(`waygate audit: stopped after ${writer.count} matching record(s) (--limit${flags.limit === undefined ? `, default ${TABLE_DEFAULT_LIMIT} for tables` : ''})\n`);
    const whereErrors = query.where?.errors;
    if (whereErrors && whereErrors.count > 0 && whereErrors.count === whereErrors.evaluated) {
      // Failing on every record is a wrong expression for this input (e.g. `dryRun.decision` on
      // a log without dry-run policies), not data: a usage error, like a type error at load.
      io.stderr.write(`waygate audit: --where failed to evaluate on every record it was applied to (${whereErrors.count}): ${whereErrors.first}\n`);
      return EXIT_USAGE;
    }
    if (query.where && query.where.errors.count > 0) {
      io.stderr.write(`waygate audit: --where failed to evaluate on ${query.where.errors.count} record(s) (counted as no match), first: ${query.where.errors.first}\n`);
    }
    const issues = describeIssues(stats);
    if (issues) io.stderr.write(`waygate audit: ${issues}\n`);
    return EXIT_OK;
  });
}

function splitList(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  return values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

function expandEvents(values: string[] | undefined): AuditEvent[] | undefined {
  const list = splitList(values);
  if (!list) return undefined;
  const out = new Set<AuditEvent>();
  for (const v of list) {
    if (v === 'all') ['decision', 'close', 'reload'].forEach((e) => out.add(e as AuditEvent));
    else if (v === 'decision' || v === 'close' || v === 'reload') out.add(v);
    else throw new WaygateError('WG_USAGE', `--event ${JSON.stringify(v)}: expected decision, close, reload or all${didYouMean(v, [...ALL_EVENTS, 'all'])}`);
  }
  return [...out];
}

/** `waygate audit replay --policies NEW_DIR [paths...]`. */
export function runAuditReplay(paths: string[], flags: ReplayFlags, io: AuditIo = defaultIo()): Promise<number> {
  return guarded(io, async () => {
    if (!flags.policies || flags.policies.length === 0) throw new WaygateError('WG_USAGE', 'replay needs --policies DIR (the candidate policy set)');
    const win = window(flags, io);
    const { snapshot, files } = await loadPolicies(flags.policies, io);
    const sources = await resolveSources(paths, readOptions(io));
    const stats = newReadStats();
    const acc = new ReplayAccumulator({ snapshot, defaultAction: flags.defaultAction ?? 'DENY', examples: flags.examples ?? 3, ...win });
    for await (const batch of readRecordBatches(sources, stats, readOptions(io))) {
      for (let i = 0; i < batch.length; i++) acc.add(batch[i]!);
    }
    assertRecords(stats);
    const result = acc.result(stats, files);
    if (flags.format === 'json' || flags.format === 'yaml') writeData(result, flags.format, io.stdout);
    else await writeOut(io.stdout, renderReplay(result, flags.format === 'markdown' ? 'markdown' : 'text'));
    const issues = describeIssues(stats);
    if (issues) io.stderr.write(`waygate audit: ${issues}\n`);
    const a2d = result.allowToDeny;
    if (flags.failOnNewDenies && a2d.inexact > 0) {
      // Printed, never gating: the log cannot show what these decisions depend on.
      io.stderr.write(`waygate audit: ${a2d.inexact} allow -> deny flip(s) are inexact (they depend on headers or baggage the log does not record) and do not fail --fail-on-new-denies; see the report\n`);
    }
    if (flags.failOnNewDenies && a2d.exact > 0) {
      io.stderr.write(`waygate audit: ${a2d.exact} decision(s) would flip from allow to deny under the candidate policies\n`);
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  });
}

/** `waygate audit report --html out.html [paths...]`. */
export function runAuditReport(paths: string[], flags: ReportFlags, io: AuditIo = defaultIo()): Promise<number> {
  return guarded(io, async () => {
    if (!flags.html) throw new WaygateError('WG_USAGE', 'report needs --html FILE');
    const win = window(flags, io);
    const catalog = flags.policies?.length ? catalogFromSnapshot((await loadPolicies(flags.policies, io)).snapshot) : null;
    const sources = await resolveSources(paths, readOptions(io));
    const stats = newReadStats();
    const acc = new ReportAccumulator({ catalog, ...win, title: flags.title, maxDenies: flags.maxDenies });
    for await (const batch of readRecordBatches(sources, stats, readOptions(io))) {
      for (let i = 0; i < batch.length; i++) acc.add(batch[i]!);
    }
    assertRecords(stats);
    const data = acc.result(stats, new Date((io.now ?? Date.now)()));
    try {
      await writeFile(flags.html, renderHtmlReport(data));
    } catch (err) {
      throw new WaygateError('WG_USAGE', `cannot write ${flags.html}: ${(err as Error).message}`, { cause: err });
    }
    io.stderr.write(`wrote ${flags.html}: ${data.summary.decisions.total} decisions, ${data.deniesTotal} denies\n`);
    const issues = describeIssues(stats);
    if (issues) io.stderr.write(`waygate audit: ${issues}\n`);
    return EXIT_OK;
  });
}

/**
 * `waygate audit suggest --out DIR [--policies DIR|FILE...] [paths...]`: draft ALLOW policies from
 * the allowed traffic (src/audit/review/suggest.ts), write them with their PolicyTests (and, with
 * --policies, the DENY and AUDIT policies in force, copied), then replay the same records against
 * what was written (the files as loaded from DIR) and report what would flip. One read of the input
 * (ReplayStore keeps what the replay needs), so stdin works.
 */
export function runAuditSuggest(paths: string[], flags: SuggestFlags, io: AuditIo = defaultIo()): Promise<number> {
  return guarded(io, async () => {
    if (!flags.out) throw new WaygateError('WG_USAGE', 'suggest needs --out DIR (where the suggested policies are written)');
    // The replay loads the whole directory: files left from another run would be replayed too.
    let existing: string[];
    try {
      existing = await readdir(flags.out);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new WaygateError('WG_USAGE', `cannot use --out ${flags.out}: ${(err as Error).message}`, { cause: err });
      existing = [];
    }
    if (existing.length > 0) throw new WaygateError('WG_USAGE', `--out ${flags.out} is not empty: suggest writes a whole policy set and replays it, so give it a new or empty directory`);
    const win = window(flags, io);
    const inForce = flags.policies?.length ? await loadPolicies(flags.policies, io) : null;
    const sources = await resolveSources(paths, readOptions(io));
    const stats = newReadStats();
    // One RecordInputs: each record's input is rebuilt once for the suggestion and the replay store.
    const inputs = new RecordInputs();
    const acc = new SuggestAccumulator({ ...win, minCount: flags.minCount ?? 1, inForce: inForce?.snapshot ?? null, inputs });
    const store = new ReplayStore(inForce?.snapshot ?? null, inputs);
    for await (const batch of readRecordBatches(sources, stats, readOptions(io))) {
      for (let i = 0; i < batch.length; i++) {
        const rec = batch[i]!;
        if (!acc.inWindow(rec)) continue;
        acc.add(rec);
        store.add(rec);
      }
    }
    assertRecords(stats);
    const suggestion: SuggestResult = acc.result();
    if (suggestion.files.length === 0) throw new WaygateError('WG_USAGE', `no allowed traffic${flags.minCount && flags.minCount > 1 ? ` seen at least ${flags.minCount} times` : ''} in ${suggestion.decisions} decision record(s): nothing to suggest`);
    let kept: KeptFile[] = [];
    if (inForce !== null) {
      const texts = new Map<string, string>();
      for (const f of new Set(inForce.snapshot.policies.map((p) => p.location.file))) {
        try {
          texts.set(f, await readFile(f, 'utf8'));
        } catch (err) {
          throw new WaygateError('WG_USAGE', `cannot read ${f} again to copy its DENY and AUDIT policies: ${(err as Error).message}`, { cause: err });
        }
      }
      kept = keptPolicyFiles(inForce.snapshot, texts, new Set(suggestion.files.map((f) => f.path.replace(/\.yaml$/, ''))));
    }
    try {
      await mkdir(flags.out, { recursive: true });
      for (const f of [...kept, ...suggestion.files]) await writeFile(join(flags.out, f.path), f.text);
    } catch (err) {
      throw new WaygateError('WG_USAGE', `cannot write to ${flags.out}: ${(err as Error).message}`, { cause: err });
    }
    const { snapshot, files } = await loadPolicies([flags.out], io);
    const replay = new ReplayAccumulator({ snapshot, defaultAction: 'DENY', examples: 3 });
    store.replayInto(replay);
    const replayed = replay.result(stats, files);
    const { files: _texts, ...summary } = suggestion;
    const keptSummary = kept.map(({ text: _t, ...k }) => k);
    if (flags.format === 'json' || flags.format === 'yaml') writeData({ out: flags.out, kept: keptSummary, suggestion: summary, replay: replayed }, flags.format, io.stdout);
    else {
      const md = flags.format === 'markdown';
      const keptLines = kept.map((k) => `kept ${k.policies.join(', ')} (DENY/AUDIT in force) from ${k.from} as ${k.path}`);
      await writeOut(io.stdout, renderSuggest(suggestion, flags.out, md ? 'markdown' : 'text') + (keptLines.length > 0 ? keptLines.join('\n') + '\n' : '') + '\n' + renderReplay(replayed, md ? 'markdown' : 'text'));
    }
    if (store.perRecord !== null) io.stderr.write(`waygate audit: ${store.perRecord}: the replay keeps every decision record in memory\n`);
    const issues = describeIssues(stats);
    if (issues) io.stderr.write(`waygate audit: ${issues}\n`);
    const a2d = replayed.allowToDeny;
    if (flags.failOnNewDenies && a2d.exact > 0) {
      io.stderr.write(`waygate audit: ${a2d.exact} decision(s) would flip from allow to deny under the suggested policies\n`);
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  });
}
