// The web queue viewer in a real browser (issue 15, MG-4): Debian's chromium
// driven by playwright-core against an in-process Sluice with real sinks.
// Login and logout, a wrong token, the queues table refreshing by itself, a
// filter error at its column, bulk suspend and remove with NDR over a filter
// (checked in the store and at the sink), the message detail and .eml
// download, listener suspend seen by an SMTP client, a reload whose plan is
// shown before it applies, and a POST without the CSRF token refused.
// SLUICE_UI_SCREENSHOTS=1 also writes a screenshot of each page to docs/ui/.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { callApi, type Json } from '../support/api.js';
import { waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { TEST_TOKEN, startTestSluice } from '../support/sluice.js';
import { webSettings } from '../../src/web/plugin.js';
import { tempDir } from '../support/temp.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium): the web viewer browser tests are skipped`;
const SHOTS = fileURLToPath(new URL('../../../docs/ui/', import.meta.url));

const body = (subject: string) => `From: a@example.net\r\nMessage-ID: <${subject}@example.net>\r\nSubject: ${subject}\r\n\r\nHello ${subject}.\r\n`;

/** The files of a tar archive, by name. */
function untar(archive: Buffer): Map<string, string> {
  const files = new Map<string, string>();
  for (let at = 0; at + 512 <= archive.length; ) {
    const name = archive.subarray(at, at + 100).toString('utf8').replace(/\0.*$/s, '');
    if (!name) break;
    const size = parseInt(archive.subarray(at + 124, at + 136).toString('utf8'), 8);
    files.set(name, archive.subarray(at + 512, at + 512 + size).toString('utf8'));
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

async function shot(page: Page, name: string): Promise<void> {
  if (process.env.SLUICE_UI_SCREENSHOTS) await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}

test('the web queue viewer in chromium (MG-4)', { skip, timeout: 90_000 }, async (t) => {
  const sink = await startSink(t);
  const reports = await startSink(t);
  const route = (name: string, match: string, port: number) => ({ name, match: [match], smartHosts: [`127.0.0.1:${port}`], tls: 'none', maxConnections: 1 });
  const routes = [route('backend', 'example.com', sink.port), route('senders', 'example.net', reports.port)];
  const sluice = await startTestSluice(t, { routes });
  const api = sluice.sluice.management.address.port;
  const base = `http://127.0.0.1:${api}`;
  const list = async (filter: string) =>
    (await callApi<{ messages: Array<Json & { Identity: string; Status: string }> }>(api, 'GET', `/api/v1/messages?filter=${encodeURIComponent(filter)}`)).json.messages;

  const profile = await tempDir(t, 'sluice-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10_000);

  // one delivered message makes the backend queue
  await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('first'));
  await sink.waitFor(1);

  await t.test('a wrong token is refused without saying why; the right one logs in', async () => {
    await page.goto(`${base}/`);
    assert.equal(await page.getByRole('heading').first().textContent(), 'Sluice');
    await shot(page, 'login');
    await page.getByLabel('Management token').fill('not-the-token-at-all');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.equal((await page.getByRole('alert').textContent())?.trim(), 'Login failed.');
    assert.deepEqual((await context.cookies()).filter((c) => c.name === 'sluice_session'), []);
    await page.getByLabel('Management token').fill(TEST_TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Queues' }).waitFor();
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'sluice_session');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
  });

  await t.test('the queues table refreshes by itself when mail arrives; Suspend per queue', async () => {
    const row = page.getByRole('row', { name: /test\/backend/ });
    await row.getByRole('button', { name: 'Suspend' }).click();
    await page.getByRole('status').filter({ hasText: 'Suspended test/backend' }).waitFor();
    assert.match((await row.textContent()) ?? '', /Suspended/);
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    for (const subject of ['bulk-1', 'bulk-2', 'bulk-3']) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(subject));
    // no reload: the table polls
    await waitUntil(async () => (await row.getByRole('cell').nth(2).textContent()) === '3', 10_000);
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, 'the page was not reloaded');
    await shot(page, 'queues');
    if (process.env.SLUICE_UI_SCREENSHOTS) {
      await page.setViewportSize({ width: 390, height: 844 });
      await shot(page, 'phone-queues');
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  await t.test('a bad filter is shown at its column', async () => {
    await page.getByRole('link', { name: 'Messages', exact: true }).click();
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    // by keyboard: type into the box, Enter applies it
    await page.getByRole('textbox', { name: 'Filter' }).focus();
    await page.keyboard.type('Status -equals "Ready"');
    await page.keyboard.press('Enter');
    const alert = page.getByRole('alert');
    assert.match((await alert.textContent()) ?? '', /column 8: .*unknown operator/);
    assert.equal(await page.locator('#filter-error pre').textContent(), 'Status -equals "Ready"\n       ^');
    assert.equal(await page.getByRole('textbox', { name: 'Filter' }).getAttribute('aria-invalid'), 'true');
    await shot(page, 'filter-error');
  });

  await t.test('bulk suspend over a filter, confirmed with its count, lands in the store', async () => {
    await page.getByRole('textbox', { name: 'Filter' }).fill('Subject -like "bulk-*"');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('row', { name: /bulk-3/ }).waitFor();
    assert.equal(await page.getByRole('row').count(), 4, 'a header row and 3 messages');
    await shot(page, 'messages');
    await page.getByLabel('All that match the filter').check();
    await page.getByRole('button', { name: 'Suspend', exact: true }).click();
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /^Suspend 3 messages that match the filter/);
    await shot(page, 'confirm');
    assert.equal((await list('Subject -like "bulk-*"')).filter((m) => m.Status === 'Suspended').length, 0, 'nothing happens before the confirmation');
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('status').filter({ hasText: 'Suspended: 3' }).waitFor();
    assert.deepEqual((await list('Subject -like "bulk-*"')).map((m) => m.Status), ['Suspended', 'Suspended', 'Suspended']);
  });

  await t.test('bulk remove with NDR over a filter: gone from the store, reports at the sender', async () => {
    await page.getByLabel('All that match the filter').check();
    await page.getByRole('button', { name: 'Remove with NDR' }).click();
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /3 messages that match the filter/);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('status').filter({ hasText: 'Removed: 3' }).waitFor();
    assert.deepEqual(await list('Subject -like "bulk-*"'), []);
    const ndrs = await reports.waitFor(3);
    assert.ok(ndrs.every((m) => m.to.join() === 'a@example.net' && /5\.0\.0/.test(m.body.toString())));
  });

  await t.test('the message detail and its .eml download', async () => {
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com', 'c@example.com'], body('detail'));
    await waitUntil(async () => (await list('Subject -eq "detail" -and Queue -eq backend')).length === 1);
    await page.getByRole('textbox', { name: 'Filter' }).fill('Subject -eq "detail"');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('link', { name: /^test\/backend\// }).click();
    await page.getByRole('heading', { name: /^Message test\/backend\// }).waitFor();
    const recipients = await page.getByRole('row', { name: /^c@example\.com/ }).textContent();
    assert.match(recipients ?? '', /Ready/);
    assert.match((await page.locator('table').last().textContent()) ?? '', /received/, 'tracking history');
    assert.match((await page.locator('pre.block').textContent()) ?? '', /Subject: detail/);
    await shot(page, 'message');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download .eml' }).click()]);
    const eml = await readFile((await download.path())!, 'utf8');
    assert.match(download.suggestedFilename(), /\.eml$/);
    assert.match(eml, /^X-Sender: <a@example\.net>\r\nX-Receiver: <b@example\.com>\r\nX-Receiver: <c@example\.com>\r\n/);
    assert.match(eml, /Subject: detail\r\n/);
  });

  await t.test('keyset pages, selected rows with a progress page, export of several as .tar, retry, and the chart', async (t) => {
    for (const subject of ['page-1', 'page-2', 'page-3']) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(subject));
    await waitUntil(async () => (await list('Subject -like "page-*" -and Queue -eq backend')).length === 3);
    webSettings.pageSize = 2;
    t.after(() => void (webSettings.pageSize = 100));
    await page.getByRole('link', { name: 'Messages', exact: true }).click();
    await page.getByRole('textbox', { name: 'Filter' }).fill('Subject -like "page-*"');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('row', { name: /page-2/ }).waitFor();
    assert.equal(await page.getByRole('row', { name: /page-3/ }).count(), 0, 'two a page');
    await page.getByRole('link', { name: 'Next page' }).click();
    await page.getByRole('row', { name: /page-3/ }).waitFor();
    assert.equal(await page.getByRole('row').count(), 2, 'a header row and the last message');
    assert.equal(await page.getByRole('link', { name: 'Next page' }).count(), 0);
    await page.getByRole('link', { name: 'First page' }).click();

    // selected rows; the action shows its progress page (no inline wait)
    await page.getByRole('row', { name: /page-1/ }).getByRole('checkbox').check();
    await page.getByRole('row', { name: /page-2/ }).getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Suspend', exact: true }).click();
    assert.equal(await page.locator('#confirm-text').textContent(), 'Suspend 2 messages selected?');
    webSettings.inlineWaitMs = 0;
    t.after(() => void (webSettings.inlineWaitMs = 1500));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('heading', { name: 'Suspend: 2 selected' }).waitFor();
    await page.getByRole('status').filter({ hasText: 'Done. Suspended: 2' }).waitFor();
    assert.equal(await page.locator('progress').getAttribute('value'), '2');
    await shot(page, 'progress');
    webSettings.inlineWaitMs = 1500;
    assert.deepEqual((await list('Subject -like "page-*" -and Queue -eq backend')).map((m) => [m.Subject, m.Status]), [
      ['page-1', 'Suspended'],
      ['page-2', 'Suspended'],
      ['page-3', 'Ready'],
    ]);
    await page.getByRole('link', { name: 'Back to messages' }).click();

    // export of all that match: one .tar of .eml files
    webSettings.pageSize = 100;
    await page.getByLabel('All that match the filter').check();
    await page.getByRole('button', { name: 'Export' }).click();
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /^Export 3 messages that match the filter/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Confirm' }).click()]);
    assert.equal(download.suggestedFilename(), 'sluice-export.tar');
    const files = untar(await readFile((await download.path())!));
    assert.equal(files.size, 3);
    assert.ok([...files.keys()].every((name) => /^backend_[0-9A-Z]{16}\.eml$/.test(name)));
    assert.ok([...files.values()].some((eml) => eml.startsWith('X-Sender: <a@example.net>') && eml.includes('Subject: page-2')));

    // retry: the queues holding them
    await page.goto(`${base}/ui/messages?filter=${encodeURIComponent('Subject -like "page-*"')}`);
    await page.getByLabel('All that match the filter').check();
    await page.getByRole('button', { name: 'Retry' }).click();
    assert.match((await page.locator('main').textContent()) ?? '', /the queues that hold them \(test\/backend\)/);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('status').filter({ hasText: 'Retried 1 queue' }).waitFor();

    await page.getByRole('link', { name: 'Queues', exact: true }).click();
    assert.match((await page.locator('#queues svg[role=img]').getAttribute('aria-label')) ?? '', /^Queue depth now \d+ messages/);
  });

  await t.test('a listener suspended in the page answers 421 to an SMTP client', async () => {
    await page.getByRole('link', { name: 'Listeners' }).click();
    await page.getByRole('heading', { name: 'Listeners' }).waitFor();
    await page.getByRole('row', { name: /inbound/ }).getByRole('button', { name: 'Suspend' }).click();
    await page.getByRole('status').filter({ hasText: 'Listener inbound is Suspended' }).waitFor();
    await shot(page, 'listeners');
    const client = await SmtpClient.connect(sluice.port);
    assert.equal((await client.reply()).code, 421);
    client.close();
    await page.getByRole('row', { name: /inbound/ }).getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('status').filter({ hasText: 'Listener inbound is Active' }).waitFor();
    const again = await SmtpClient.connect(sluice.port);
    assert.equal((await again.reply()).code, 220);
    again.close();
  });

  await t.test('Reload shows the plan first and applies it only when confirmed', async () => {
    await page.getByRole('link', { name: 'Configuration' }).click();
    await page.getByRole('heading', { name: 'Configuration', exact: true }).waitFor();
    const running = (await page.getByLabel('Running configuration').textContent()) ?? '';
    assert.match(running, /token: \(redacted\)/);
    assert.doesNotMatch(running, new RegExp(TEST_TOKEN));
    await shot(page, 'config');
    await sluice.rewriteConfig({ routes: [...routes, route('extra', 'example.org', sink.port)] });
    await page.getByRole('button', { name: 'Reload' }).click();
    await page.getByRole('heading', { name: 'Reload plan' }).waitFor();
    assert.match((await page.locator('main').textContent()) ?? '', /extra: added/);
    await shot(page, 'reload-plan');
    const before = await context.newPage();
    await before.goto(`${base}/ui/config`);
    assert.doesNotMatch((await before.getByLabel('Running configuration').textContent()) ?? '', /example\.org/, 'not applied yet');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('heading', { name: 'Configuration reloaded' }).waitFor();
    await before.reload();
    assert.match((await before.getByLabel('Running configuration').textContent()) ?? '', /example\.org/);
    await before.close();
  });

  await t.test('a POST without the CSRF token is refused (403) and changes nothing; the session opens no API route', async () => {
    const refused = await page.request.post(`${base}/ui/listeners/action`, { form: { name: 'inbound', action: 'suspend' } });
    assert.equal(refused.status(), 403);
    const wrong = await page.request.post(`${base}/ui/listeners/action`, { form: { name: 'inbound', action: 'suspend', csrf: 'forged' } });
    assert.equal(wrong.status(), 403);
    const listeners = (await callApi<Array<Json>>(api, 'GET', '/api/v1/listeners')).json;
    assert.deepEqual(listeners.map((l) => l.Status), ['Active']);
    // the session is for the pages only: the API still wants its bearer token, and lists no page
    assert.equal((await page.request.get(`${base}/api/v1/queues`)).status(), 401);
    const openapi = (await callApi<{ paths: Record<string, unknown> }>(api, 'GET', '/api/v1/openapi.json')).json;
    assert.deepEqual(Object.keys(openapi.paths).filter((path) => path === '/' || path.startsWith('/ui')), []);
  });

  await t.test('Log out ends the session on the server', async () => {
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'sluice_session');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('status').filter({ hasText: 'You are logged out.' }).waitFor();
    const replayed = await fetch(`${base}/ui/queues`, { headers: { cookie: `sluice_session=${cookie!.value}` }, redirect: 'manual' });
    assert.equal(replayed.status, 303);
    assert.equal(replayed.headers.get('location'), '/ui/login');
    await page.goto(`${base}/ui/messages`);
    await page.getByLabel('Management token').waitFor();
  });
});
