/**
 * Shared CLI output: the `-o, --output` option, colour that appears only on a terminal, and
 * compiler-style diagnostic lines. Every verb writes through these so scripts get the same shapes
 * everywhere: JSON is one document on stdout ending in a newline; text goes to stdout, problems
 * about the invocation itself to stderr.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Diagnostic } from '../errors.ts';
import { didYouMean } from '../util/suggest.ts';

/**
 * The one output-format vocabulary of every verb (`-o, --output <format>`); each verb accepts the
 * subset that makes sense for what it prints (docs/reviewing-decisions.md, docs/writing-policies.md).
 */
export const OUTPUT_FORMATS = ['text', 'json', 'jsonl', 'csv', 'markdown', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/**
 * commander argument parser for one verb's formats. `aliases` are old spellings still accepted
 * (`table` for `text` in `audit query`) and never listed. A bad value is a usage error (exit 2)
 * whose message lists what the verb takes, with the nearest one when the value looks like a typo.
 */
export function outputParser<F extends OutputFormat>(formats: readonly F[], aliases: Readonly<Record<string, F>> = {}) {
  return (value: string): F => {
    if ((formats as readonly string[]).includes(value)) return value as F;
    const alias = aliases[value];
    if (alias !== undefined) return alias;
    throw new InvalidArgumentError(`expected one of ${formats.join(', ')}${didYouMean(value, formats)}`);
  };
}

/**
 * Adds `-o, --output <format>` to a verb, plus the hidden `--format <format>` (the spelling these
 * verbs had before, kept so scripts do not break) writing the same value: actions read `output`.
 */
export function addOutputOption<F extends OutputFormat>(
  cmd: Command,
  formats: readonly F[],
  opts: { default?: F; aliases?: Readonly<Record<string, F>> } = {},
): Command {
  const parse = outputParser(formats, opts.aliases);
  const fallback = opts.default ?? formats[0]!;
  // choices() lists the formats in --help and for completion (src/cli/completion.ts); the parser
  // set after it replaces commander's check with one that also takes the aliases and suggests.
  cmd.addOption(new Option('-o, --output <format>', 'output format').choices(formats).argParser(parse).default(fallback));
  cmd.addOption(new Option('--format <format>', 'same as --output').choices(formats).argParser(parse).hideHelp());
  // commander's own listener for --format (registered by addOption above) has parsed and
  // validated the value by the time this one runs.
  cmd.on('option:format', () => cmd.setOptionValueWithSource('output', cmd.getOptionValue('format'), 'cli'));
  return cmd;
}

/** Anything text can be written to: process.stdout, process.stderr, or a test's capture. */
export interface TextSink {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

/**
 * Where verbs write. process.stdout/stderr unless `captureOutput` is running: tests run verbs
 * in-process, and patching process.stdout would also swallow the test runner's own reports.
 */
let captured: { out: TextSink; err: TextSink } | null = null;

/** The stream a verb's result goes to. */
export function stdout(): TextSink {
  return captured?.out ?? process.stdout;
}

/** The stream for problems with the invocation itself. */
export function stderr(): TextSink {
  return captured?.err ?? process.stderr;
}

/**
 * Runs `fn` with stdout()/stderr() collected into strings (not a TTY, so no colour). Captures
 * do not nest; the previous sinks are restored even when `fn` throws.
 */
export async function captureOutput<T>(fn: () => Promise<T>): Promise<{ value: T; stdout: string; stderr: string }> {
  let out = '';
  let err = '';
  const previous = captured;
  captured = { out: { write: (c: string) => (out += c) }, err: { write: (c: string) => (err += c) } };
  try {
    const value = await fn();
    return { value, stdout: out, stderr: err };
  } finally {
    captured = previous;
  }
}

/**
 * Colour is used only when the stream is a terminal and NO_COLOR is unset or empty
 * (https://no-color.org: "when present and not an empty string"). Pipes, files and CI logs get
 * plain text, so output can be diffed and grepped.
 */
export function colourEnabled(stream: TextSink = stdout(), env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

/** ANSI styling functions; each returns its input unchanged when colour is off. */
export interface Style {
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

/** Builds the styling functions for a stream (see colourEnabled). */
export function styleFor(stream: TextSink = stdout(), env: NodeJS.ProcessEnv = process.env): Style {
  const on = colourEnabled(stream, env);
  // SGR codes (ECMA-48 §8.3.117); each span resets only its own attribute so spans can nest.
  const wrap = (open: number, close: number) => (s: string) => (on ? `\u001b[${open}m${s}\u001b[${close}m` : s);
  return {
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
    bold: wrap(1, 22),
    dim: wrap(2, 22),
  };
}

/** A diagnostic-shaped record whose `code` may be a lint code as well as an ErrorCode. */
export type DiagnosticLike = Omit<Diagnostic, 'code'> & { code: string };

/**
 * `file:line:col: severity CODE at path: message`, the shape of src/errors.ts formatDiagnostic, so
 * editors and CI problem matchers annotate the right line. Only the severity word is coloured.
 */
export function formatDiagnosticLine(d: DiagnosticLike, style?: Style): string {
  const sev = style ? (d.severity === 'error' ? style.red(d.severity) : style.yellow(d.severity)) : d.severity;
  return `${d.file}:${d.line}:${d.col}: ${sev} ${d.code} at ${d.path || '<document>'}: ${d.message}`;
}

/** Writes one JSON document followed by a newline (2-space indented: humans read it too). */
export function writeJson(value: unknown, stream: TextSink = stdout()): void {
  stream.write(JSON.stringify(value, null, 2) + '\n');
}

/** Writes lines of text, each terminated by a newline; nothing at all for an empty list. */
export function writeLines(lines: readonly string[], stream: TextSink = stdout()): void {
  if (lines.length > 0) stream.write(lines.join('\n') + '\n');
}

/** Orders diagnostics by file, line, column so output is stable across runs. */
export function sortDiagnostics<T extends DiagnosticLike>(list: readonly T[]): T[] {
  return [...list].sort(
    (a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.col - b.col,
  );
}

/** `waygate audit query` for a command of the tree: its names from the root down. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * After a usage error (bad flag value, unknown flag, missing argument) commander prints its
 * one-line `error: ...`; this sets the line after it to a hint naming the command's own --help,
 * instead of the whole usage text, on every command of the tree.
 */
export function hintAfterErrors(cmd: Command): void {
  cmd.showHelpAfterError(`hint: \`${commandPath(cmd)} --help\` lists its arguments, flags and the values they take`);
  for (const sub of cmd.commands) hintAfterErrors(sub);
}
