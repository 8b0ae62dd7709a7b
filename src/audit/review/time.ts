/**
 * Time bounds for `--since`/`--until`: a duration relative to now (`90s`, `30m`, `2h`, `7d`, `1w`,
 * combinations like `1h30m`) or an RFC 3339 timestamp (`2026-11-26T10:00:00Z`, or a date
 * `2026-11-26` meaning its UTC midnight).
 */
import { WaygateError } from '../../errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses `1h30m`-style durations to milliseconds; null when `text` is not a duration. */
export function parseDurationMs(text: string): number | null {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  return matched > 0 && matched === text.length ? total : null;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2}))?$/;

/**
 * Parses a `--since`/`--until` value to epoch milliseconds. `flag` names the option in errors.
 * Throws WaygateError(WG_USAGE) with an example of each accepted form.
 */
export function parseTimeBound(text: string, nowMs: number, flag = '--since'): number {
  const trimmed = text.trim();
  const duration = parseDurationMs(trimmed);
  if (duration !== null) return nowMs - duration;
  if (RFC3339.test(trimmed)) {
    const withZone = /^\d{4}-\d{2}-\d{2}$/.test(trimmed) ? `${trimmed}T00:00:00Z` : trimmed;
    const ms = Date.parse(withZone.replace(' ', 'T'));
    if (!Number.isNaN(ms)) return ms;
  }
  throw new WaygateError(
    'WG_USAGE',
    `${flag} ${JSON.stringify(text)}: expected a duration before now (30m, 2h, 7d, 1h30m) or an RFC 3339 time (2026-11-26T10:00:00Z)`,
  );
}
