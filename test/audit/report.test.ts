/**
 * `waygate audit report --html`: a self-contained document (no external references) whose embedded
 * data cannot break out of its script block, rendered in a real browser (Debian's chromium driven
 * by playwright-core): charts and the deny table are there, and the filter narrows the rows. A
 * principal carrying `</script><script>` must render as text and never execute.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { jsonForScript } from '../../src/audit/review/report.ts';
import { runAuditReport } from '../../src/cli/audit.ts';
import { generateAuditLog } from '../helpers/audit-log.ts';
import { captureIo } from '../helpers/audit-io.ts';

const CHROMIUM = '/usr/bin/chromium';
const EVIL = 'spiffe://cluster.local/ns/evil/sa/</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

describe('audit report', () => {
  let dir: string;
  let html: string;
  let htmlPath: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-report-'));
    const log = generateAuditLog({ decisions: 3000, seed: 5 });
    const lines = log.text.trimEnd().split('\n');
    // An attacker-chosen principal (and header) in a denied decision.
    const base = JSON.parse(lines.find((l) => l.includes('"reason":"no_allow_match"'))!) as Record<string, unknown>;
    const evil = {
      ...base,
      decisionId: 'evil-1',
      source: { ...(base.source as object), principal: EVIL, namespace: 'evil' },
      headers: { 'user-agent': '<script>window.__pwned=3</script>\u2028' },
    };
    lines.push(JSON.stringify(evil));
    const file = path.join(dir, 'audit.jsonl');
    await writeFile(file, lines.join('\n') + '\n');
    htmlPath = path.join(dir, 'report.html');
    const io = captureIo('', { now: Date.parse('2026-11-27T00:00:00Z') });
    assert.equal(await runAuditReport([file], { html: htmlPath, title: 'Audit <b>Q4</b>' }, io), 0);
    assert.match(io.stderrText(), /wrote .*report\.html/);
    html = await readFile(htmlPath, 'utf8');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is self-contained: no external URL, a CSP that forbids fetches', () => {
    assert.ok(!/\b(src|href)\s*=\s*["']?(https?:)?\/\//i.test(html), 'no external src/href');
    assert.ok(!/@import|url\(\s*['"]?http/i.test(html));
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  });

  it('embedded data cannot close its script block; the title is escaped', () => {
    const block = html.slice(html.indexOf('<script type="application/json"'), html.indexOf('</script>', html.indexOf('<script type="application/json"')));
    assert.ok(!block.slice(block.indexOf('>') + 1).includes('<'), 'no < inside the JSON block');
    assert.ok(block.includes('\\u003c/script\\u003e\\u003cscript\\u003ewindow.__pwned=1'));
    assert.ok(html.includes('<title>Audit &#60;b&#62;Q4&#60;/b&#62;</title>'));
    assert.equal(jsonForScript({ a: '</script>\u2028&' }), '{"a":"\\u003c/script\\u003e\\u2028\\u0026"}');
    assert.deepEqual(JSON.parse(jsonForScript({ a: '</script>\u2028&' })), { a: '</script>\u2028&' });
  });

  it('renders in headless Chromium: charts, deny table, working filter, attacker text inert', async (t) => {
    if (!existsSync(CHROMIUM)) {
      t.skip(`${CHROMIUM} is missing (apt-get install -y chromium)`);
      return;
    }
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('request', (r) => {
        if (!r.url().startsWith('file:')) requests.push(r.url());
      });
      await page.goto(pathToFileURL(htmlPath).href);
      await page.waitForSelector('#deny-table tbody tr');

      assert.deepEqual(errors, []);
      assert.deepEqual(requests, [], 'no network request of any kind');
      assert.equal(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned), undefined, 'attacker script never ran');

      // Charts: SVGs with bars.
      assert.ok((await page.locator('svg[data-chart="time"] rect.bar.allow').count()) > 1);
      assert.ok((await page.locator('svg[data-chart="time"] rect.bar.deny').count()) > 1);
      assert.ok((await page.locator('svg[data-chart="denied"] rect.bar').count()) > 1);
      assert.ok((await page.locator('svg[data-chart="rules"] rect.bar').count()) > 1);
      assert.ok((await page.locator('svg[data-chart="dryrun"] rect.bar').count()) >= 1);
      assert.equal(await page.locator('#issues li').count(), 3, 'malformed / unknown-schema lines listed (the operational log line is counted, not listed)');

      // Table + filter.
      const visible = () => page.locator('#deny-table tbody tr:visible').count();
      const before = await visible();
      assert.ok(before > 100);
      await page.fill('#deny-filter', 'ns/evil/');
      assert.equal(await visible(), 1);
      // The attacker principal is shown as text, exactly.
      assert.equal(await page.locator('#deny-table tbody tr:visible td').nth(1).textContent(), EVIL);
      await page.fill('#deny-filter', '');
      assert.equal(await visible(), before);
      await page.selectOption('#reason-filter', 'explicit_deny');
      const onlyExplicit = await visible();
      assert.ok(onlyExplicit > 0 && onlyExplicit < before);
      const reasons = await page.locator('#deny-table tbody tr:visible td:nth-child(5)').allTextContents();
      assert.ok(reasons.every((r) => r === 'explicit_deny'));
      await page.fill('#deny-filter', 'ci-runner');
      assert.ok((await visible()) < onlyExplicit);
      assert.match((await page.locator('#deny-count').textContent()) ?? '', /^showing \d+ of \d+/);
      await page.fill('#deny-filter', '');
      await page.selectOption('#reason-filter', '');

      await page.screenshot({ path: '/tmp/waygate-report.png', fullPage: true });
    } finally {
      await browser.close();
    }
  });
});
