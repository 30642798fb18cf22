// The viewer in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): search and paging by clicking, an event's field diff and verified
// inclusion proof, a target's timeline, stored markup shown as text with no script run,
// the guard's 403, the CSP as the browser receives it, the audit.viewed rows, and a
// narrow screen. Screenshots go to test-artifacts/viewer/; with UPDATE_SCREENSHOTS=1
// the README's docs/images/viewer.png is written too.
import { generateKeyPairSync } from 'node:crypto';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditViewerModule } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts/viewer');
const XSS_REASON = '<script>alert("reason")</script>';
const XSS_STATUS = '<script>alert(2)</script>';
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/** The little of the browser's `window` the page functions use (the tests compile without the DOM library). */
interface BrowserWindow {
  getComputedStyle(element: unknown): { display: string };
}

/** Whether `path` is an executable file. */
function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

const haveChromium = executable(CHROMIUM);
if (!haveChromium) {
  if (process.env['CI'] === 'true') {
    throw new Error(`CI=true and the browser tests are mandatory, but there is no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  }
  const bar = '!'.repeat(78);
  console.warn(`\n${bar}\n!! SKIPPING the viewer's browser tests: no Chromium at ${CHROMIUM}\n!! (apt-get install chromium; set CI=true to make them mandatory)\n${bar}\n`);
}

describe.skipIf(!haveChromium)('audit viewer in headless Chromium (SQLite, Express)', () => {
  let db: TestDatabase;
  let t: TestApp;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  let orderId: number;
  let checkpoints: number;
  let treeSize: number;
  const dialogs: string[] = [];
  const { privateKey } = generateKeyPairSync('ed25519');

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    db = await createTestDatabase('sqlite');
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: 'audit.test/viewer', sequenceEvery: 50, checkpointEvery: { events: 100_000, ms: 3_600_000 } } },
      imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard, pageSize: 5 })],
    });
    const bob = { authorization: 'Bearer bob-token' };
    const created = await t.request('/orders', { method: 'POST', headers: bob, json: { total: 2400 } });
    orderId = ((await created.json()) as { id: number }).id;
    await t.request(`/orders/${orderId}`, { method: 'PATCH', headers: { ...bob, 'x-reason': XSS_REASON }, json: { status: XSS_STATUS } });
    for (let i = 1; i <= 8; i++) await t.audit.log({ action: 'report.exported', actor: { type: 'service', id: 'reporter' }, context: { batch: i } });
    treeSize = (await t.audit.checkpoint()).treeSize; // every event so far is covered by a signed checkpoint
    checkpoints = await t.dataSource.getRepository(AuditCheckpointEntity).count();

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    admin = await browser.newContext({ extraHTTPHeaders: { authorization: 'Bearer alice-token' }, viewport: { width: 1200, height: 900 } });
    page = await admin.newPage();
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await db?.drop();
  });

  it('turns away a browser the guard refuses with its 403, showing nothing of the trail', async () => {
    const stranger = await browser.newContext();
    try {
      const other = await stranger.newPage();
      const response = await other.goto(`${t.url}/audit`);
      expect(response?.status()).toBe(403);
      expect(await other.textContent('body')).toContain('Admins only');
      expect(await other.textContent('body')).not.toContain('order.');
    } finally {
      await stranger.close();
    }
  });

  it('searches with the form and pages back with "Older" until the first event', async () => {
    const response = await page.goto(`${t.url}/audit`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toBe(CSP);
    // The stylesheet applied (the CSP lets only the viewer's own through).
    expect(await page.locator('header.bar').evaluate((el) => (globalThis as unknown as BrowserWindow).getComputedStyle(el).display)).toBe('flex');
    await page.fill('input[name="action"]', 'report.exported');
    await page.click('button[type="submit"]');
    await page.waitForURL(/action=report.exported/);
    const seen: string[] = [];
    for (let pages = 0; pages < 4; pages++) {
      seen.push(...(await page.locator('table.events tbody tr').evaluateAll((rows) => rows.map((row) => row.querySelector('a')!.getAttribute('href')!))));
      const older = page.getByRole('link', { name: 'Older →' });
      if ((await older.count()) === 0) break;
      await older.click();
      await page.waitForLoadState();
    }
    const stored = (await t.rows()).filter((row) => row.action === 'report.exported').reverse();
    expect(seen).toEqual(stored.map((row) => `/audit/events/${row.id}`));
    expect(await page.inputValue('input[name="action"]')).toBe('report.exported');
    await page.screenshot({ path: join(ARTIFACTS, 'search-last-page.png'), fullPage: true });
  });

  it('opens an event: its field diff, stored markup as text (no script, no dialog), the verified proof', async () => {
    await page.goto(`${t.url}/audit?action=order.updated`);
    await page.locator('table.events tbody tr').first().getByRole('link', { name: 'order.updated' }).click();
    await page.waitForURL(/\/audit\/events\//);
    const diff = page.locator('section.change tr', { hasText: 'status' });
    expect(await diff.locator('td.diff-from').innerText()).toBe('"new"');
    expect(await diff.locator('td.diff-to').innerText()).toBe(JSON.stringify(XSS_STATUS));
    await expect.poll(() => page.getByText(XSS_REASON, { exact: true }).isVisible()).toBe(true);
    expect(await page.locator('script').count()).toBe(0);
    expect(dialogs).toEqual([]);
    expect(await page.locator('.proof-ok').innerText()).toBe('Inclusion proof verified against the signed checkpoint.');
    expect(treeSize).toBe(10);
    expect(await page.locator('dt:text-is("Tree size") + dd').innerText()).toBe(String(treeSize));
    await page.screenshot({ path: join(ARTIFACTS, 'event.png'), fullPage: true });
    if (process.env['UPDATE_SCREENSHOTS'] === '1') await page.screenshot({ path: join(ROOT, 'docs/images/viewer.png'), fullPage: true });
  });

  it('follows the target link to the timeline, oldest first, with the diffs and the markup as text', async () => {
    await page.getByRole('link', { name: `Order #${orderId}` }).first().click();
    await page.waitForURL(/\/audit\/timeline\?/);
    const actions = await page.locator('ol.timeline > li strong').allInnerTexts();
    expect(actions).toEqual(['order.created', 'order.updated']);
    expect(await page.locator('ol.timeline > li').first().locator('section.change h3').innerText()).toBe(`Order #${orderId} · created`);
    await expect.poll(() => page.getByText(XSS_REASON, { exact: true }).isVisible()).toBe(true);
    expect(await page.locator('script').count()).toBe(0);
    expect(dialogs).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'timeline.png'), fullPage: true });
  });

  it('shows bad input as a 400 page with the reason', async () => {
    const response = await page.goto(`${t.url}/audit?from=not-a-date`);
    expect(response?.status()).toBe(400);
    expect(await page.getByRole('alert').innerText()).toBe('Invalid audit query: from is not a valid date and time: "not-a-date" (use YYYY-MM-DDTHH:MM, in UTC)');
  });

  it('stacks the form and the results on a narrow screen', async () => {
    const phone = await browser.newContext({ extraHTTPHeaders: { authorization: 'Bearer alice-token' }, viewport: { width: 375, height: 740 }, isMobile: true });
    try {
      const narrow = await phone.newPage();
      await narrow.goto(`${t.url}/audit`);
      const inputs = await narrow.locator('form.search input[type="text"]').evaluateAll((els) => els.map((el) => el.getBoundingClientRect().left));
      expect(new Set(inputs.map(Math.round)).size).toBe(1); // one column
      expect(await narrow.locator('table.events thead').isVisible()).toBe(false);
      const overflow = await narrow.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      expect(overflow).toBeLessThanOrEqual(0);
      await narrow.screenshot({ path: join(ARTIFACTS, 'narrow.png'), fullPage: true });
    } finally {
      await phone.close();
    }
  });

  it('recorded each page the admin saw as audit.viewed, and wrote nothing else', async () => {
    const rows = await t.rows();
    const views = rows.filter((row) => row.action === 'audit.viewed');
    const seen = views.filter((row) => row.outcome === 'success');
    expect(seen.length).toBeGreaterThanOrEqual(7);
    expect(new Set(seen.map((row) => `${row.actorType}:${row.actorId}`))).toEqual(new Set(['user:1']));
    expect(seen.map((row) => (row.context as { view: string }).view)).toContain('event');
    // The guard's 403, and the bad query answered with a 400 page (the status the client got).
    expect(views.filter((row) => row.outcome === 'failure').map((row) => [row.error?.status, row.error?.name])).toEqual([
      [403, expect.any(String)],
      [400, 'InvalidAuditQueryError'],
    ]);
    expect(rows.filter((row) => !['audit.viewed', 'report.exported'].includes(row.action)).map((row) => row.action)).toEqual(['order.created', 'order.updated']);
    expect(await t.dataSource.getRepository(AuditCheckpointEntity).count()).toBe(checkpoints);
  });
});
