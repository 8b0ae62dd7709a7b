/**
 * One table of the gateway's numeric options: for each, its config path (under `spec`), its
 * range, unit, default and meaning. Every side that checks one of these numbers reads it from here,
 * so they cannot disagree:
 *
 * - the config loader (src/config/load.ts) and the serve flags (src/config/flags.ts): the bounds;
 * - the config defaults of both profiles (src/config/schema.ts): the defaults;
 * - the library checks of the parts the config feeds, which are also used directly (tests,
 *   embedders): the HBONE server (src/hbone/server-options.ts), its HTTP/2 settings
 *   (src/hbone/h2-settings.ts), the HBONE upstream pool (src/upstream/hbone.ts) and the sandwich
 *   listener (src/sandwich/listener.ts) check the options they take against the same entry, with
 *   the same default when one is left out.
 *
 * docs/operating.md ("Numeric fields") shows this table; test/config/ranges.test.ts checks that it
 * matches, and that each bound is accepted and each bound +-1 refused by the loader and the library.
 */
import { WaygateError } from '../errors.ts';
// A duration that ends up in a timer is at most TIMER_MAX_MS (about 24.8 days).
import { TIMER_MAX_MS } from '../util/long-timer.ts';

export type RangeUnit = 'ms' | 'bytes' | 'connections' | 'streams' | 'dials' | 'processes';

export interface NumericRange {
  /** Field path under the config's `spec`, e.g. `timeouts.connectTimeoutMs`. */
  readonly path: string;
  readonly min: number;
  readonly max: number;
  readonly unit: RangeUnit;
  /** The default of the config (both profiles) and of every library that takes the option; null: derived (see `meaning`). */
  readonly default: number | null;
  /** One line: what the number does (and what 0 means, where 0 is allowed). */
  readonly meaning: string;
}

const DAY_MS = 86_400_000;
/** RFC 9113 §6.5.2 settings are 32-bit; nghttp2 and Node take counts up to 2^31-1 without question. */
const INT31_MAX = 2 ** 31 - 1;

const table = {
  'policies.debounceMs': {
    min: 0, max: 60_000, unit: 'ms', default: 250,
    meaning: 'quiet period after the last policy file event before a reload is attempted',
  },
  'timeouts.connectTimeoutMs': {
    min: 1, max: DAY_MS, unit: 'ms', default: 10_000,
    meaning: 'upstream connect (plain TCP dial or HBONE CONNECT answer); 503 after it',
  },
  'timeouts.handshakeTimeoutMs': {
    min: 1, max: DAY_MS, unit: 'ms', default: 10_000,
    meaning: 'TLS handshake plus HTTP/2 preface on the listener; TCP, TLS and SETTINGS towards an HBONE destination',
  },
  'timeouts.drainTimeoutMs': {
    min: 0, max: DAY_MS, unit: 'ms', default: null,
    meaning: 'how long a drain waits for tunnels before resetting them; default from TERMINATION_GRACE_PERIOD_SECONDS, else 5000',
  },
  'timeouts.idleTimeoutMs': {
    min: 0, max: TIMER_MAX_MS, unit: 'ms', default: 0,
    meaning: 'close a tunnel with no byte in either direction for this long; 0 = never',
  },
  'limits.maxConnections': {
    min: 0, max: 10_000_000, unit: 'connections', default: 10_000,
    meaning: 'concurrent TLS connections; further ones are dropped before TLS; 0 = unlimited',
  },
  'limits.maxStreamsPerConnection': {
    min: 1, max: INT31_MAX, unit: 'streams', default: 200,
    meaning: 'SETTINGS_MAX_CONCURRENT_STREAMS of the listener',
  },
  'limits.maxHeaderListBytes': {
    // RFC 9113 §6.5.2 leaves the value open; below 1 KiB no real CONNECT fits.
    min: 1_024, max: 16 * 1024 * 1024, unit: 'bytes', default: 65_536,
    meaning: 'SETTINGS_MAX_HEADER_LIST_SIZE of the listener',
  },
  'limits.maxPendingDialsPerConnection': {
    // 0 would let no CONNECT dial; "unlimited" is not offered: the cap is what bounds a peer's dials.
    min: 1, max: INT31_MAX, unit: 'dials', default: 100,
    meaning: 'upstream dials in flight per connection; more CONNECTs wait for a slot; clamped to maxStreamsPerConnection',
  },
  'upstream.maxStreamsPerConnection': {
    min: 1, max: INT31_MAX, unit: 'streams', default: 100,
    meaning: "HBONE streams per pooled connection to a destination's ztunnel (its own SETTINGS also apply)",
  },
  'upstream.poolIdleTimeoutMs': {
    min: 1, max: TIMER_MAX_MS, unit: 'ms', default: 300_000,
    meaning: 'close a pooled HBONE connection with no stream for this long',
  },
  'sandwich.headerTimeoutMs': {
    min: 1, max: 60_000, unit: 'ms', default: 5_000,
    meaning: 'close a sandwich stream whose PROXY v2 header is not complete this long after accept',
  },
  workers: {
    min: 1, max: 1_024, unit: 'processes', default: 1,
    meaning: 'processes sharing the listener (or "auto": one per core)',
  },
} as const satisfies Record<string, Omit<NumericRange, 'path'>>;

export type RangePath = keyof typeof table;

/** The table, by config path. */
export const RANGES: { readonly [P in RangePath]: (typeof table)[P] & { readonly path: P } } = Object.freeze(
  Object.fromEntries(Object.entries(table).map(([path, r]) => [path, Object.freeze({ path, ...r })])),
) as never;

/** Every entry, in the table's order (the order docs/operating.md lists them in). */
export const RANGE_LIST: readonly NumericRange[] = Object.freeze(Object.values(RANGES));

/** `[min, max]` of an option, for the config loader's and the flags' integer checks. */
export function bounds(path: RangePath): [number, number] {
  const r = RANGES[path];
  return [r.min, r.max];
}

/** `min-max` as every message about the option writes it (the config loader's wording, src/config/yaml-walk.ts). */
export function formatRange(r: NumericRange): string {
  return `${r.min}-${r.max}`;
}

/** Why `v` is not a value of the option, or null. */
export function rangeProblem(r: NumericRange, v: unknown): string | null {
  if (typeof v !== 'number' || !Number.isInteger(v)) return `expected an integer ${formatRange(r)}, got ${JSON.stringify(v)}`;
  if (v < r.min || v > r.max) return `${v} is out of range ${formatRange(r)}`;
  return null;
}

/**
 * A library's check of one option: `v`, or the table's default when it is undefined or null,
 * in range. Throws `WG_CONFIG` naming the option as the library calls it (`name`), the config
 * path it comes from, and the range.
 */
export function optionInRange(path: RangePath, name: string, v: unknown): number {
  const r: NumericRange = RANGES[path];
  const value = v ?? r.default;
  const where = name === path ? name : `${name} (config ${path})`;
  if (value === null) throw new WaygateError('WG_CONFIG', `${where}: required, an integer ${formatRange(r)} (${r.unit})`);
  const problem = rangeProblem(r, value);
  if (problem !== null) throw new WaygateError('WG_CONFIG', `${where}: ${problem} (${r.unit})`);
  return value as number;
}
