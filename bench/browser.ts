// The web viewer's Messages page timed in a real browser (issue 15: "the Messages page with a
// selective filter renders in under 1 s, measured in the browser"): headless chromium, driven by
// playwright-core with the launch flags of test/web/ui.test.ts, logs in with the management token,
// then opens `/ui/messages?filter=…` `repeat` times and the unfiltered first page once. Each time is
// taken in the page: from the navigation's start (`performance.timeOrigin`, the Performance API's
// zero) until the document is parsed with the results table holding the expected rows (watched by an
// init script that runs before any of the page's own) and the next frame after that has been
// produced (two `requestAnimationFrame`s).
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './run.js';

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumPresent = (): boolean => existsSync(CHROMIUM);
/** The Messages page shows this many per page (docs/ui.md). */
export const UI_PAGE = 100;
/** Longest wait for one page. */
const PAGE_TIMEOUT_MS = 120_000;

/** What the page's init script records, in ms since the navigation started. */
interface PageTiming {
  rowsAt: number | null;
  paintedAt: number | null;
  rows: number;
}

interface BrowserTiming {
  /** From the navigation's start until the table had its rows and the next frame was produced. */
  renderedMs: number;
  /** Until the rows were in the DOM (before the frame). */
  rowsInDomMs: number;
  /** Navigation Timing: first byte of the answer, its end, DOMContentLoaded, load. */
  responseStartMs: number;
  responseEndMs: number;
  domContentLoadedMs: number;
  loadMs: number;
  /** As the benchmark's process saw it: from `page.goto` until the rendered mark was read. */
  driverMs: number;
  rows: number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** Installed in every document before its own scripts: watches the messages table until it has `expected` rows. */
function watchRows(expected: number): void {
  const w = window as unknown as { __sluiceBench?: PageTiming };
  const timing: PageTiming = { rowsAt: null, paintedAt: null, rows: 0 };
  w.__sluiceBench = timing;
  const check = (): boolean => {
    // the Messages page: the filter box, then the one results table
    // (and the document parsed to its end, so the last row is complete)
    if (document.readyState === 'loading' || !document.getElementById('filter')) return false;
    timing.rows = document.querySelectorAll('table tbody tr').length;
    if (timing.rows < expected) return false;
    timing.rowsAt = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => (timing.paintedAt = performance.now())));
    return true;
  };
  let done = false;
  const observer = new MutationObserver(() => {
    if (!done && (done = check())) observer.disconnect();
  });
  observer.observe(document, { childList: true, subtree: true });
  document.addEventListener('readystatechange', () => {
    if (!done && (done = check())) observer.disconnect();
  });
}

export interface WebViewerRun {
  name: string;
  url: string;
  expectedRows: number;
  repeat: number;
}

/**
 * Logs in and times each run's page. A page without the expected rows, a login that fails, or a
 * page that does not come within PAGE_TIMEOUT_MS is a problem (and that run has no time).
 */
export async function timeWebViewer(context: BenchContext, base: string, token: string, runs: WebViewerRun[]) {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'sluice-bench-chromium-'));
  context.defer(() => rm(profile, { recursive: true, force: true }));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await browser.close().catch(() => undefined);
  };
  context.defer(close);
  const problems: string[] = [];
  try {
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(PAGE_TIMEOUT_MS);
    await page.goto(`${base}/`);
    await page.getByLabel('Management token').fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Queues' }).waitFor();
    const version = browser.browser()?.version() ?? null;
    context.progress(`chromium ${version ?? ''} logged in to ${base}`);

    const results = [];
    for (const run of runs) {
      await page.addInitScript(watchRows, run.expectedRows);
      const timings: BrowserTiming[] = [];
      for (let i = 0; i < run.repeat; i++) {
        const started = performance.now();
        try {
          await page.goto(`${base}${run.url}`, { waitUntil: 'load' });
          await page.waitForFunction(() => (window as unknown as { __sluiceBench?: PageTiming }).__sluiceBench?.paintedAt != null, undefined, { timeout: PAGE_TIMEOUT_MS });
          const driverMs = performance.now() - started;
          const measured = await page.evaluate(() => {
            const mark = (window as unknown as { __sluiceBench: PageTiming }).__sluiceBench;
            const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
            return { ...mark, nav: { responseStart: nav.responseStart, responseEnd: nav.responseEnd, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd } };
          });
          timings.push({
            renderedMs: round2(measured.paintedAt!),
            rowsInDomMs: round2(measured.rowsAt!),
            responseStartMs: round2(measured.nav.responseStart),
            responseEndMs: round2(measured.nav.responseEnd),
            domContentLoadedMs: round2(measured.nav.dcl),
            loadMs: round2(measured.nav.load),
            driverMs: round2(driverMs),
            rows: measured.rows,
          });
        } catch (error) {
          const rows = await page
            .evaluate(() => (window as unknown as { __sluiceBench?: PageTiming }).__sluiceBench?.rows ?? null)
            .catch(() => null);
          problems.push(`browser, ${run.name} (run ${i + 1}): the table never had ${run.expectedRows} rows (${rows ?? 'no'} rows): ${(error as Error).message.split('\n')[0]}`);
          break;
        }
      }
      const rendered = spread(timings.map((t) => t.renderedMs));
      if (rendered) context.progress(`browser, ${run.name}: ${timings.at(-1)!.rows} rows rendered in median ${rendered.median} / max ${rendered.max} ms (${timings.length} runs)`);
      results.push({ name: run.name, url: run.url, expectedRows: run.expectedRows, renderedMs: rendered, runs: timings });
    }
    return { chromium: version, results, problems };
  } finally {
    await close();
  }
}

function spread(values: number[]): { min: number; median: number; max: number } | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  const median = sorted.length % 2 === 1 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { min: round2(sorted[0]!), median: round2(median), max: round2(sorted.at(-1)!) };
}
