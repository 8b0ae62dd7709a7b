/**
 * `waygate audit summary|query|replay|report|suggest`: review the decisions in audit logs (docs/design.md §4,
 * §5). Inputs are JSON-lines files (plain or gzip), globs, or stdin. Exit codes: 0 success, 1 the
 * command found what it gates on (`replay`/`suggest --fail-on-new-denies` with an allow -> deny flip), 2 usage
 * or input error (bad flag, unreadable file, policy set that does not load).
 *
 * Each verb is also exported as a `runAuditXxx(args, io)` function returning the exit code, so
 * tests drive them in-process with captured streams. This module builds the commands and declares
 * their flags; what the verbs do is src/cli/audit-run.ts, loaded when one of them runs
 * (docs/architecture.md, "Adding a CLI verb").
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { DefaultAction } from '../policy/decision.ts';
import type { QueryFormat } from '../audit/review/query.ts';
import { RECORD_CEL_VARIABLES } from '../audit/review/record-variables.ts';
import { didYouMean } from '../util/suggest.ts';
import { addOutputOption, type OutputFormat } from './output.ts';

/** Streams the review verbs read and write; tests pass captures. */
export interface AuditIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /** Clock for `--since 2h`; default Date.now. */
  now?: () => number;
}

export interface TimeWindowFlags {
  since?: string;
  until?: string;
}

export interface SummaryFlags extends TimeWindowFlags {
  policies?: string[];
  format?: ReportOutput;
  top?: number;
}

export interface QueryFlags extends TimeWindowFlags {
  decision?: 'allow' | 'deny';
  reason?: string[];
  principal?: string;
  namespace?: string[];
  policy?: string;
  rule?: string;
  destination?: string;
  where?: string;
  event?: string[];
  limit?: number;
  format?: QueryFormat;
}

export interface ReplayFlags extends TimeWindowFlags {
  policies: string[];
  defaultAction?: DefaultAction;
  failOnNewDenies?: boolean;
  format?: ReportOutput;
  examples?: number;
}

export interface ReportFlags extends TimeWindowFlags {
  html: string;
  policies?: string[];
  title?: string;
  maxDenies?: number;
}

export interface SuggestFlags extends TimeWindowFlags {
  out: string;
  /** The policy set in force: its DENY and AUDIT policies are kept beside the suggestion. */
  policies?: string[];
  minCount?: number;
  failOnNewDenies?: boolean;
  format?: ReportOutput;
}

/** Default row limit of the table format (it is buffered to size its columns). */
export const TABLE_DEFAULT_LIMIT = 1000;

/** `waygate audit summary [paths...]`. */
export async function runAuditSummary(paths: string[], flags: SummaryFlags, io?: AuditIo): Promise<number> {
  return (await import('./audit-run.ts')).runAuditSummary(paths, flags, io);
}

/** `waygate audit query [paths...]`. */
export async function runAuditQuery(paths: string[], flags: QueryFlags, io?: AuditIo): Promise<number> {
  return (await import('./audit-run.ts')).runAuditQuery(paths, flags, io);
}

/** `waygate audit replay --policies NEW_DIR [paths...]`. */
export async function runAuditReplay(paths: string[], flags: ReplayFlags, io?: AuditIo): Promise<number> {
  return (await import('./audit-run.ts')).runAuditReplay(paths, flags, io);
}

/** `waygate audit report --html out.html [paths...]`. */
export async function runAuditReport(paths: string[], flags: ReportFlags, io?: AuditIo): Promise<number> {
  return (await import('./audit-run.ts')).runAuditReport(paths, flags, io);
}

/** `waygate audit suggest --out DIR [--policies DIR|FILE...] [paths...]` (src/cli/audit-run.ts says what it writes). */
export async function runAuditSuggest(paths: string[], flags: SuggestFlags, io?: AuditIo): Promise<number> {
  return (await import('./audit-run.ts')).runAuditSuggest(paths, flags, io);
}

// ---------------------------------------------------------------------------------------------
// commander wiring

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

function choice<T extends string>(values: readonly T[]) {
  return (value: string): T => {
    if ((values as readonly string[]).includes(value)) return value as T;
    throw new InvalidArgumentError(`expected one of ${values.join(', ')}, got "${value}"${didYouMean(value, values)}`);
  };
}

/** summary and replay: text, a Markdown report (PR comments, tickets), or the result as one document. */
const REPORT_OUTPUTS = ['text', 'json', 'yaml', 'markdown'] as const satisfies readonly OutputFormat[];
type ReportOutput = (typeof REPORT_OUTPUTS)[number];
/** query streams records in constant memory: one per line, as JSON or CSV; text is a table. */
const QUERY_OUTPUTS = ['text', 'jsonl', 'csv'] as const satisfies readonly OutputFormat[];
type QueryOutput = (typeof QUERY_OUTPUTS)[number];

const PATHS_HELP = 'audit logs: files (plain or gzip), globs, or - for stdin (default: stdin when piped)';

/** Registers `waygate audit ...`. */
export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('review decisions in audit logs: summary, query, replay, report, suggest');
  const finish = (code: number) => {
    process.exitCode = code;
  };

  const summary = audit
    .command('summary')
    .description('totals by decision and reason, top denied identities, rule hits (and rules that never fired), dry-run impact, tunnel bytes and durations')
    .argument('[paths...]', PATHS_HELP)
    .option('--policies <dir>', 'policy set whose rules should be listed even when they never fired (repeatable)', collect)
    .option('--since <time>', 'only records at or after: a duration before now (2h, 30m, 7d) or RFC 3339')
    .option('--until <time>', 'only records before: a duration before now or RFC 3339')
    .option('--top <n>', 'entries in each top list', positiveInt, 10);
  addOutputOption(summary, REPORT_OUTPUTS).action(async (paths: string[], opts: SummaryFlags & { output: ReportOutput }) =>
    finish(await runAuditSummary(paths, { ...opts, format: opts.output })));

  const query = audit
    .command('query')
    .description('list the records that match filters, as a table, JSON lines or CSV')
    .argument('[paths...]', PATHS_HELP)
    .addOption(new Option('--decision <verdict>', 'allow or deny').choices(['allow', 'deny']).argParser(choice(['allow', 'deny'] as const)))
    .option('--reason <reason>', 'reason code (repeatable or comma-separated; close records: close reason)', collect)
    .option('--principal <glob>', 'SPIFFE ID glob, * matches across / (spiffe://cluster.local/ns/prod/*)')
    .option('--namespace <ns>', 'source namespace (repeatable or comma-separated)', collect)
    .option('--policy <name>', 'deciding policy, or an AUDIT / dry-run / eval-error match')
    .option('--rule <name>', 'rule name (with --policy: that policy\'s rule)')
    .option('--destination <dst>', 'IP, IP:port, [IPv6]:port, CIDR or host:port')
    .option('--since <time>', 'at or after: a duration before now (2h, 30m, 7d) or RFC 3339')
    .option('--until <time>', 'before: a duration before now or RFC 3339')
    .option('--where <cel>', `CEL over the record, type-checked first; variables: ${RECORD_CEL_VARIABLES.map(([n]) => n).join(', ')}`)
    .option('--event <event>', 'decision (default), close, reload or all (repeatable)', collect)
    .option('--limit <n>', `stop after n matches (text default ${TABLE_DEFAULT_LIMIT})`, positiveInt);
  // `table` was this verb's name for the text form before -o: still accepted, never listed.
  addOutputOption(query, QUERY_OUTPUTS, { aliases: { table: 'text' } }).action(async (paths: string[], opts: QueryFlags & { output: QueryOutput }) =>
    finish(await runAuditQuery(paths, { ...opts, format: opts.output === 'text' ? 'table' : opts.output })));

  const replay = audit
    .command('replay')
    .description('re-decide recorded decisions with a candidate policy set and report what would flip')
    .argument('[paths...]', PATHS_HELP)
    .requiredOption('--policies <dir>', 'candidate policy set (repeatable)', collect)
    .addOption(new Option('--default-action <action>', "the gateway's defaultAction to replay with").choices(['ALLOW', 'DENY']).default('DENY'))
    .option('--fail-on-new-denies', 'exit 1 when any decision would flip from allow to deny (CI gate; inexact flips are reported, not counted)')
    .option('--examples <n>', 'examples per group', positiveInt, 3)
    .option('--since <time>', 'only records at or after: duration before now or RFC 3339')
    .option('--until <time>', 'only records before: duration before now or RFC 3339');
  addOutputOption(replay, REPORT_OUTPUTS).action(async (paths: string[], opts: ReplayFlags & { output: ReportOutput }) =>
    finish(await runAuditReplay(paths, { ...opts, format: opts.output })));

  const suggest = audit
    .command('suggest')
    .description('draft least-privilege ALLOW policies (and PolicyTests) from the allowed traffic, then replay the log against them')
    .argument('[paths...]', PATHS_HELP)
    .requiredOption('--out <dir>', 'directory the suggested policies and tests are written to')
    .option('--policies <path>', 'the policy set in force (repeatable): its DENY and AUDIT policies are copied beside the suggestion and replayed with it', collect)
    .option('--min-count <n>', 'leave out callers seen fewer than n times at a destination', positiveInt, 1)
    .option('--fail-on-new-denies', 'exit 1 when any recorded allow would flip to deny under the suggestion')
    .option('--since <time>', 'only records at or after: duration before now or RFC 3339')
    .option('--until <time>', 'only records before: duration before now or RFC 3339');
  addOutputOption(suggest, REPORT_OUTPUTS).action(async (paths: string[], opts: SuggestFlags & { output: ReportOutput }) =>
    finish(await runAuditSuggest(paths, { ...opts, format: opts.output })));

  audit
    .command('report')
    .description('write one self-contained HTML report (charts and a filterable table of denies; no network fetches)')
    .argument('[paths...]', PATHS_HELP)
    .requiredOption('--html <file>', 'output HTML file')
    .option('--policies <dir>', 'policy set, to list rules that never fired (repeatable)', collect)
    .option('--title <text>', 'report title')
    .option('--max-denies <n>', 'latest denies embedded in the table', positiveInt, 5000)
    .option('--since <time>', 'only records at or after: duration before now or RFC 3339')
    .option('--until <time>', 'only records before: duration before now or RFC 3339')
    .action(async (paths: string[], opts: ReportFlags) => finish(await runAuditReport(paths, opts)));
}
