/**
 * Text and Markdown tables for review output. Every cell may hold attacker-controlled text (a
 * principal, a header, a host from a CONNECT authority), so cells are neutralised for the medium:
 * control characters are escaped before they reach a terminal (no ANSI/OSC injection), and
 * Markdown/HTML metacharacters are escaped before a summary lands in a PR comment.
 */

export type Align = 'left' | 'right';

/** Replaces C0/C1 control characters (ESC, CR, BEL, ...) with visible `\xNN` escapes. */
export function sanitizeForTerminal(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Escapes a Markdown table cell: pipes, HTML, emphasis/link/code markers and line breaks. */
export function escapeMarkdownCell(text: string): string {
  return sanitizeForTerminal(text).replace(/[\\|`*[\]<>&#~!]/g, (c) => {
    if (c === '<') return '&lt;';
    if (c === '>') return '&gt;';
    if (c === '&') return '&amp;';
    return `\\${c}`;
  });
}

/** A plain text table with a header rule; numbers right-aligned when `align` says so. */
export function renderTextTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[], align?: readonly Align[]): string {
  const cells = rows.map((r) => r.map((c) => sanitizeForTerminal(String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: readonly string[]) =>
    r
      .map((c, i) => (align?.[i] === 'right' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(fmt)].join('\n');
}

/** A GitHub-flavoured Markdown table. */
export function renderMarkdownTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[], align?: readonly Align[]): string {
  const line = (r: readonly string[]) => `| ${r.join(' | ')} |`;
  return [
    line(headers.map(escapeMarkdownCell)),
    line(headers.map((_, i) => (align?.[i] === 'right' ? '---:' : '---'))),
    ...rows.map((r) => line(r.map((c) => escapeMarkdownCell(String(c))))),
  ].join('\n');
}

/** Formats an integer with thousands separators (stable, locale-independent). */
export function formatCount(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Formats milliseconds as a short duration (`850ms`, `12.3s`, `4m05s`, `2h10m`). */
export function formatDurationMs(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
