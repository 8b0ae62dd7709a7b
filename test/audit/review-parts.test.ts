/**
 * The review CLI's small parts, table-driven: time bounds, globs, the quantile sketch, the
 * auto-sized time histogram, the bounded top counter, terminal/Markdown escaping, progress bar.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { segmentToRegExp, wildcardToRegExp } from '../../src/audit/review/glob.ts';
import { ProgressBar } from '../../src/audit/review/progress.ts';
import { QuantileSketch } from '../../src/audit/review/sketch.ts';
import { escapeMarkdownCell, sanitizeForTerminal } from '../../src/audit/review/table.ts';
import { TimeHistogram } from '../../src/audit/review/time-histogram.ts';
import { parseDurationMs, parseTimeBound } from '../../src/audit/review/time.ts';
import { TopCounter } from '../../src/audit/review/top-counter.ts';

describe('time bounds', () => {
  const now = Date.parse('2026-11-26T12:00:00Z');
  const cases: [string, number | RegExp][] = [
    ['2h', now - 2 * 3_600_000],
    ['30m', now - 30 * 60_000],
    ['7d', now - 7 * 86_400_000],
    ['1h30m', now - 90 * 60_000],
    ['90s', now - 90_000],
    ['1w', now - 604_800_000],
    ['2026-11-26T10:00:00Z', Date.parse('2026-11-26T10:00:00Z')],
    ['2026-11-26T10:00:00.250+02:00', Date.parse('2026-11-26T08:00:00.250Z')],
    ['2026-11-26', Date.parse('2026-11-26T00:00:00Z')],
    ['yesterday', /expected a duration/],
    ['2h ago', /expected a duration/],
    ['2026-11-26T10:00', /RFC 3339/],
    ['-5m', /expected a duration/],
  ];
  for (const [text, want] of cases) {
    it(text, () => {
      if (typeof want === 'number') assert.equal(parseTimeBound(text, now), want);
      else assert.throws(() => parseTimeBound(text, now), want);
    });
  }
  it('parseDurationMs rejects partial matches', () => {
    assert.equal(parseDurationMs('5m'), 300_000);
    assert.equal(parseDurationMs('5mx'), null);
    assert.equal(parseDurationMs(''), null);
  });
});

describe('glob matching', () => {
  const seg: [string, string, boolean][] = [
    ['*.jsonl', 'audit.jsonl', true],
    ['*.jsonl', 'audit.jsonl.gz', false],
    ['audit-?.log', 'audit-1.log', true],
    ['audit-?.log', 'audit-12.log', false],
    ['audit-[0-9].log', 'audit-7.log', true],
    ['audit-[!0-9].log', 'audit-7.log', false],
    ['a.b', 'axb', false],
  ];
  for (const [pattern, name, want] of seg) it(`${pattern} ~ ${name}`, () => assert.equal(segmentToRegExp(pattern).test(name), want));
  it('principal globs cross / and escape regex metacharacters', () => {
    assert.ok(wildcardToRegExp('spiffe://cluster.local/ns/prod/*').test('spiffe://cluster.local/ns/prod/sa/api'));
    assert.ok(!wildcardToRegExp('spiffe://cluster.local/ns/prod/*').test('spiffe://cluster.local/ns/production/sa/api'));
    assert.ok(!wildcardToRegExp('spiffe://cluster.local/*').test('spiffe://clusterXlocal/ns'));
    assert.ok(wildcardToRegExp('*/sa/api').test('spiffe://td/ns/a/sa/api'));
  });
});

describe('quantile sketch', () => {
  it('is within 1% of exact quantiles over a skewed distribution', () => {
    const sketch = new QuantileSketch();
    const values: number[] = [];
    let x = 12345;
    for (let i = 0; i < 50_000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const v = Math.exp((x / 2147483648) * 12) - 1; // 0 .. ~160,000 ms
      values.push(v);
      sketch.add(v);
    }
    values.sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.95, 0.99]) {
      const exact = values[Math.ceil(q * values.length) - 1]!;
      const got = sketch.quantile(q)!;
      assert.ok(Math.abs(got - exact) <= exact * 0.0101 + 1e-3, `q${q}: ${got} vs ${exact}`);
    }
    assert.equal(sketch.count, 50_000);
  });
  it('handles empty, zeros and garbage', () => {
    const s = new QuantileSketch();
    assert.equal(s.quantile(0.5), null);
    s.add(0);
    s.add(-1);
    s.add(Number.NaN);
    assert.equal(s.count, 1);
    assert.equal(s.quantile(0.99), 0);
  });
});

describe('time histogram', () => {
  it('widens buckets along the ladder, merging counts exactly, in any arrival order', () => {
    const h = new TimeHistogram(10);
    const start = Date.parse('2026-11-26T00:00:00Z');
    const times: number[] = [];
    for (let i = 0; i < 3600; i++) times.push(start + i * 1000); // one hour, one per second
    times.reverse(); // out of order
    times.forEach((t, i) => h.add(t, i % 4 === 0 ? 'deny' : 'allow'));
    const r = h.result();
    assert.equal(r.bucketMs, 600_000); // 10 buckets of 10 minutes cover the hour
    assert.equal(r.buckets.length, 6);
    assert.equal(r.buckets.reduce((s, b) => s + b.allow + b.deny, 0), 3600);
    assert.equal(r.buckets.reduce((s, b) => s + b.deny, 0), 900);
    assert.equal(r.buckets[0]!.start, '2026-11-26T00:00:00.000Z');
  });
  it('empty histogram', () => {
    assert.deepEqual(new TimeHistogram().result().buckets, []);
  });
});

describe('top counter', () => {
  it('is exact under capacity and bounded (and says approximate) beyond it', () => {
    const exact = new TopCounter(100);
    for (let i = 0; i < 50; i++) for (let j = 0; j <= i; j++) exact.add(`k${i}`);
    assert.deepEqual(exact.top(2), [{ key: 'k49', count: 50 }, { key: 'k48', count: 49 }]);
    assert.equal(exact.approximate, false);

    const sprayed = new TopCounter(100);
    for (let i = 0; i < 10_000; i++) {
      sprayed.add('heavy');
      sprayed.add(`random-${i}`);
    }
    assert.ok(sprayed.size <= 101);
    assert.deepEqual(sprayed.top(1), [{ key: 'heavy', count: 10_000 }]);
    assert.equal(sprayed.approximate, true);
    assert.ok(sprayed.errorBound >= 1);
  });
});

describe('escaping', () => {
  it('terminal output never carries control characters', () => {
    assert.equal(sanitizeForTerminal('a\u001b[31mb\r\nc\u0007'), 'a\\x1b[31mb\\x0d\\x0ac\\x07');
  });
  it('markdown cells cannot open HTML, tables or links', () => {
    assert.equal(escapeMarkdownCell('<img src=x>|[a](b)`c`'), '&lt;img src=x&gt;\\|\\[a\\](b)\\`c\\`');
  });
});

describe('progress bar', () => {
  it('draws only on a TTY, throttled, and erases itself', () => {
    let t = 0;
    const written: string[] = [];
    const tty = new ProgressBar({ isTTY: true, columns: 100, write: (s) => written.push(s) > 0 }, 1000, () => t);
    t = 1000;
    tty.advance(500, 10);
    tty.advance(100, 1); // same instant: throttled
    t = 2000;
    tty.advance(400, 5);
    tty.done();
    assert.equal(written.length, 3);
    assert.match(written[0]!, /50% .*10 records/);
    assert.match(written[1]!, /100% .*16 records/);
    assert.equal(written[2], '\r\u001b[2K');
    const pipe: string[] = [];
    const quiet = new ProgressBar({ isTTY: false, write: (s) => pipe.push(s) > 0 }, 1000, () => (t += 1000));
    quiet.advance(1000, 1);
    quiet.done();
    assert.deepEqual(pipe, []);
  });
});
