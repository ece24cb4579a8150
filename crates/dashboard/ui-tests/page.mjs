// Browser smoke test of the migration dashboard.
//
//   node page.mjs <url> <screenshot.png> [--expect-moving]
//
// Loads <url> in headless Chromium ($CHROMIUM or /usr/bin/chromium), waits for the live stream
// ([data-testid=connection] = "live") and at least one table row, prints what it saw as JSON lines,
// checks the phone layout (390x844: no horizontal overflow, tables visible) and saves full-page
// screenshots at laptop size (<screenshot.png>) and phone size (<screenshot>-phone.png).
// With --expect-moving, also requires the sum of the rows counters to grow within 30 s without a
// reload. Exit 0 on success, 1 on any failed expectation (message on stderr), 2 on bad usage.

import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const expectMoving = args.includes('--expect-moving');
const positional = args.filter((a) => !a.startsWith('--'));
if (positional.length !== 2 || args.some((a) => a.startsWith('--') && a !== '--expect-moving')) {
  console.error('usage: node page.mjs <url> <screenshot.png> [--expect-moving]');
  process.exit(2);
}
const [url, shot] = positional;
const phoneShot = /\.png$/i.test(shot) ? shot.replace(/\.png$/i, '-phone.png') : `${shot}-phone.png`;

const T0 = Date.now();
const BUDGET_MS = 58_000;
const MOVE_MS = 30_000;
const LAPTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const TESTIDS = ['phase', 'connection', 'tables', 'chart', 'verify', 'sync', 'cutover', 'freeze-timer', 'rollback', 'hub'];

/** Never print the token that may be in the URL. */
const safeUrl = url.replace(/([?&]token=)[^&#]*/g, '$1***');
const out = (obj) => console.log(JSON.stringify(obj));

class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };
const left = () => BUDGET_MS - (Date.now() - T0);

// Hard stop, whatever hangs.
const watchdog = setTimeout(() => {
  console.error(`page.mjs: FAIL: gave up after ${BUDGET_MS / 1000} s (whole-run limit)`);
  process.exit(1);
}, BUDGET_MS + 1500);
watchdog.unref();

let browser;
const pageErrors = [];

async function readTables(page) {
  return page.$$eval('[data-testid=table-row]', (rows) => rows.map((r) => {
    const rowsEl = r.querySelector('[data-testid=rows]');
    const prog = r.querySelector('[data-testid=progress]');
    return {
      table: r.getAttribute('data-table'),
      rowsValue: rowsEl ? rowsEl.getAttribute('data-value') : null,
      rowsText: rowsEl ? rowsEl.textContent.trim() : null,
      progress: prog ? prog.getAttribute('data-value') : null,
    };
  }));
}

function sumRows(tables) {
  return tables.reduce((a, t) => a + (/^\d+$/.test(t.rowsValue ?? '') ? Number(t.rowsValue) : 0), 0);
}

async function main() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  try {
    browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'], timeout: 15_000 });
  } catch (e) {
    fail(`could not launch Chromium at ${executablePath} (run scripts/ui-deps.sh?): ${e.message.split('\n')[0]}`);
  }
  const context = await browser.newContext({ viewport: LAPTOP, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message || e)));
  // A console error (a style or script the Content-Security-Policy refused, a failed request) is a
  // failure too: the page would look fine in a browser without that policy and broken in ours.
  page.on('console', (m) => {
    if (m.type() === 'error') {
      out({ console: 'error', text: m.text() });
      pageErrors.push(`console: ${m.text()}`);
    }
  });

  try {
    const resp = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: Math.min(10_000, left()) });
    if (!resp) fail(`no response loading ${safeUrl}`);
    if (!resp.ok()) fail(`loading ${safeUrl} answered HTTP ${resp.status()}`);
  } catch (e) {
    if (e instanceof Failure) throw e;
    fail(`could not load ${safeUrl}: ${e.message.split('\n')[0]}`);
  }

  // Live stream + at least one table row.
  const liveWait = Math.min(15_000, left() - (expectMoving ? MOVE_MS : 0) - 8_000);
  try {
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-testid=connection]');
      return c && c.textContent.trim() === 'live' && document.querySelectorAll('[data-testid=table-row]').length > 0;
    }, null, { timeout: Math.max(1000, liveWait), polling: 100 });
  } catch {
    const state = await page.evaluate(() => ({
      connection: document.querySelector('[data-testid=connection]')?.textContent.trim() ?? null,
      rows: document.querySelectorAll('[data-testid=table-row]').length,
    })).catch(() => ({}));
    fail(`page did not become live with table rows within ${Math.round(liveWait / 1000)} s: connection=${JSON.stringify(state.connection)}, table rows=${state.rows}`);
  }
  if (pageErrors.length) fail(`uncaught error in the page: ${pageErrors[0]}`);

  const missing = [];
  for (const id of TESTIDS) if (!(await page.$(`[data-testid="${id}"]`))) missing.push(id);
  if (missing.length) fail(`missing data-testid hooks: ${missing.join(', ')}`);

  const phase = await page.textContent('[data-testid=phase]');
  const tables = await readTables(page);
  out({ url: safeUrl, phase: phase.trim(), connection: 'live', tables: tables.length });
  for (const t of tables) out({ table: t.table, rows: t.rowsValue === null ? null : Number(t.rowsValue), text: t.rowsText, progress: t.progress === null ? null : Number(t.progress) });

  for (const t of tables) {
    if (!t.table) fail('a table row has no data-table attribute');
    if (t.rowsValue === null) fail(`table ${t.table}: no [data-testid=rows] element with data-value`);
    if (!/^\d+$/.test(t.rowsValue)) fail(`table ${t.table}: rows data-value ${JSON.stringify(t.rowsValue)} is not a plain integer`);
    const p = Number(t.progress);
    if (t.progress === null || !Number.isFinite(p) || p < 0 || p > 1) fail(`table ${t.table}: progress data-value ${JSON.stringify(t.progress)} is not a fraction 0..1`);
  }

  if (expectMoving) {
    const before = sumRows(tables);
    const wait = Math.min(MOVE_MS, left() - 6_000);
    try {
      await page.waitForFunction((b) => {
        let s = 0;
        for (const el of document.querySelectorAll('[data-testid=table-row] [data-testid=rows]')) {
          const v = el.getAttribute('data-value');
          if (/^\d+$/.test(v || '')) s += Number(v);
        }
        return s > b;
      }, before, { timeout: Math.max(1000, wait), polling: 250 });
    } catch {
      const now = await readTables(page).catch(() => []);
      const conn = await page.textContent('[data-testid=connection]').catch(() => '?');
      fail(`rows did not move: the sum of [data-testid=rows] data-value stayed at ${before} for ${Math.round(wait / 1000)} s (now ${sumRows(now)}, connection=${JSON.stringify(conn?.trim())}, tables: ${now.map((t) => `${t.table}=${t.rowsValue}`).join(' ')})`);
    }
    const after = sumRows(await readTables(page));
    out({ moving: true, rowsBefore: before, rowsAfter: after });
  }

  // A table with rows shows them as a filled bar, not only as a number.
  const fills = await page.$$eval('[data-testid=table-row] [data-testid=progress]', (bars) => bars.map((b) => ({
    value: Number(b.getAttribute('data-value')),
    filled: b.firstElementChild ? b.firstElementChild.getBoundingClientRect().width : 0,
  })));
  const started = fills.filter((f) => f.value >= 0.05);
  if (started.length && !started.some((f) => f.filled > 1)) {
    fail(`progress bars stay empty although tables are under way (${JSON.stringify(started)})`);
  }

  await page.screenshot({ path: shot, fullPage: true, timeout: 10_000 });
  out({ screenshot: shot, viewport: LAPTOP });

  // Phone size, same page (no reload).
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(400);
  const layout = await page.evaluate(() => {
    const b = document.body;
    const de = document.documentElement;
    const wide = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > de.clientWidth + 1 && r.width > 0) {
        // Report only outermost offenders not inside a horizontal scroll container.
        let p = el.parentElement; let inScroller = false;
        while (p && p !== b) { const ox = getComputedStyle(p).overflowX; if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') { inScroller = true; break; } p = p.parentElement; }
        if (!inScroller) wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : ''}${el.dataset.testid ? `[data-testid=${el.dataset.testid}]` : ''} right=${Math.round(r.right)}`);
      }
    }
    const tbody = document.querySelector('[data-testid=tables]');
    const section = tbody && (tbody.closest('section') || tbody);
    const sr = section ? section.getBoundingClientRect() : null;
    return {
      bodyScroll: b.scrollWidth, bodyClient: b.clientWidth,
      docScroll: de.scrollWidth, docClient: de.clientWidth,
      wide: wide.slice(0, 5),
      tablesVisible: !!(sr && sr.width > 0 && sr.height > 0 && getComputedStyle(section).visibility !== 'hidden'
        && tbody.getBoundingClientRect().height > 0),
    };
  });
  out({ phone: PHONE, bodyScrollWidth: layout.bodyScroll, bodyClientWidth: layout.bodyClient, documentScrollWidth: layout.docScroll, tablesVisible: layout.tablesVisible });
  if (layout.bodyScroll > layout.bodyClient + 1 || layout.docScroll > layout.docClient + 1) {
    fail(`horizontal overflow at phone size ${PHONE.width}x${PHONE.height}: body scrollWidth ${layout.bodyScroll} > clientWidth ${layout.bodyClient} (document ${layout.docScroll}/${layout.docClient}); widest: ${layout.wide.join('; ') || '?'}`);
  }
  if (!layout.tablesVisible) fail(`the tables section is not visible at phone size ${PHONE.width}x${PHONE.height}`);

  await page.screenshot({ path: phoneShot, fullPage: true, timeout: 10_000 });
  out({ screenshot: phoneShot, viewport: PHONE });

  if (pageErrors.length) fail(`uncaught error in the page: ${pageErrors[0]}`);
}

let code = 0;
try {
  await main();
  out({ ok: true, seconds: Math.round((Date.now() - T0) / 100) / 10 });
} catch (e) {
  code = 1;
  console.error(`page.mjs: FAIL: ${e instanceof Failure ? e.message : (e && e.stack) || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
