// Live reconfiguration with rerouting (RT-3, QU-7), one test per row of the
// seed's rerouting table, with real sinks and a real DNS server: a removed,
// disabled or re-kinded route resubmits its queue; a changed smart-host list is
// used from the next connection without resubmitting; a changed address space
// leaves routed mail where it is; Unreachable is resubmitted on a routing-table
// change only; a broken file changes nothing; listeners change without
// dropping sessions.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { ConfigError } from '../../src/config/load.js';
import type { ReloadPlan } from '../../src/management/reconfigure.js';
import { waitUntil } from '../support/clock.js';
import { startDnsServer } from '../support/dns-server.js';
import { deadPort, startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { TEST_TOKEN, startTestSluice, type TestSluice } from '../support/sluice.js';

const body = (subject: string) => `Subject: ${subject}\r\n\r\n${subject}\r\n`;
const smartHost = (name: string, match: string[], port: number, extra: Record<string, unknown> = {}) => ({ name, match, smartHosts: [`127.0.0.1:${port}`], tls: 'none', ...extra });

async function queued(t: TestContext, routes: unknown[], extra: Record<string, unknown> = {}) {
  const sluice = await startTestSluice(t, { routes, ...extra });
  return sluice;
}

const inRetry = (sluice: TestSluice, queue: string) => waitUntil(() => sluice.sluice.delivery.queues().find((q) => q.name === queue)?.status === 'Retry');
const routedCount = (sluice: TestSluice, id: string) => sluice.logs.filter((e) => e.msg === 'routed' && e.queueId === id).length;

describe('rerouting on reload (RT-3, QU-7)', () => {
  it('resubmits the queue of a removed route, and says where its mail goes before it moves', async (t) => {
    const dead = await deadPort();
    const sink = await startSink(t);
    const routes = [smartHost('backend', ['example.com'], dead)];
    const sluice = await queued(t, routes);
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('removed'));
    await inRetry(sluice, 'backend');
    const next = { routes: [smartHost('replacement', ['example.com'], sink.port)] };
    await sluice.rewriteConfig(next);

    const response = await fetch(`http://127.0.0.1:${sluice.sluice.management.address.port}/api/v1/config/plan`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ yaml: `routes:\n  - name: replacement\n    match: [example.com]\n    smartHosts: ["127.0.0.1:${sink.port}"]\n    tls: none\n` }),
    });
    const dryRun = (await response.json()) as ReloadPlan;
    assert.deepEqual(dryRun.Queues, [{ Identity: 'test/backend', Action: 'resubmit', Reason: 'route backend was removed', Messages: 1, To: { 'test/replacement': 1 } }]);
    assert.equal(sink.messages.length, 0, 'a plan moves nothing');

    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues, dryRun.Queues);
    const [delivered] = await sink.waitFor(1);
    assert.deepEqual(delivered!.to, ['b@example.com']);
    assert.equal(routedCount(sluice, id), 2, 'routed again by the categorizer');
  });

  it('resubmits the queue of a disabled route, whose mail goes to Unreachable', async (t) => {
    const sluice = await queued(t, [smartHost('backend', ['example.com'], await deadPort())]);
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('disabled'));
    await inRetry(sluice, 'backend');
    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.com'], await deadPort(), { enabled: false })] });
    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues, [{ Identity: 'test/backend', Action: 'resubmit', Reason: 'route backend was disabled', Messages: 1, To: { 'test/Unreachable': 1 } }]);
    await waitUntil(async () => (await sluice.sluice.store.listMessages([{ column: 'queue', operator: '-eq', value: 'Unreachable', text: true }], 10)).some((m) => m.id === id));
  });

  it('resubmits the queue of a route that changed from smart hosts to MX', async (t) => {
    const sink = await startSink(t);
    const dns = await startDnsServer(t, { 'example.com': { mx: [{ priority: 10, exchange: 'mx.example.com' }] }, 'mx.example.com': { a: ['127.0.0.1'] } });
    const extra = { dns: { servers: [dns.address], timeout: '2s' } };
    const sluice = await queued(t, [smartHost('backend', ['example.com'], await deadPort())], extra);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('kind'));
    await inRetry(sluice, 'backend');
    await sluice.rewriteConfig({ ...extra, routes: [{ name: 'backend', match: ['example.com'], mx: true, port: sink.port, tls: 'none' }] });
    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues, [{ Identity: 'test/backend', Action: 'resubmit', Reason: 'route backend changed from smart hosts to MX', Messages: 1, To: { 'test/example.com': 1 } }]);
    await sink.waitFor(1);
  });

  it('uses a changed smart-host list from the next connection, in the same queue, without resubmitting', async (t) => {
    const first = await startSink(t);
    const second = await startSink(t);
    const sluice = await queued(t, [smartHost('backend', ['example.com'], first.port)]);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('before'));
    await first.waitFor(1); // its connection now waits, idle, for more
    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.com'], second.port)] });
    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues, [{ Identity: 'test/backend', Action: 'next-connection', Reason: 'smartHosts of route backend changed', Messages: 0 }]);
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('after'));
    await second.waitFor(1);
    assert.equal(first.messages.length, 1, 'the idle connection to the old host was not reused');
    assert.equal(routedCount(sluice, id), 1);

    // a queue in Retry keeps its messages and tries the new host
    await second.stop();
    const third = await startSink(t);
    const waiting = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('waiting'));
    await inRetry(sluice, 'backend');
    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.com'], third.port)] });
    assert.deepEqual((await sluice.sluice.reload()).Queues.map((q) => [q.Action, q.Messages]), [['next-connection', 1]]);
    sluice.clock.advance(60_000); // the queue's retry
    await third.waitFor(1);
    assert.equal(routedCount(sluice, waiting), 1);
  });

  it('leaves mail already routed on its path when the address space changes; new mail follows the new table', async (t) => {
    const sink = await startSink(t);
    const sluice = await queued(t, [smartHost('backend', ['example.com'], await deadPort())]);
    const old = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('old'));
    await inRetry(sluice, 'backend');
    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.org'], await deadPort()), smartHost('preferred', ['example.com'], sink.port)] });
    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues.map((q) => [q.Identity, q.Action]), [['test/backend', 'next-connection']]);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['c@example.com'], body('new'));
    const [delivered] = await sink.waitFor(1);
    assert.deepEqual(delivered!.to, ['c@example.com']);
    assert.ok(await sluice.sluice.store.getMessage(old), 'the routed message stays in its queue');
    assert.equal(routedCount(sluice, old), 1);
  });

  it('resubmits Unreachable when the routing table changed, and only then', async (t) => {
    const sink = await startSink(t);
    const sluice = await queued(t, [smartHost('backend', ['example.com'], await deadPort())]);
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['x@nowhere.test'], body('unreachable'));
    await sluice.waitForLog((e) => e.msg === 'routed' && e.queueId === id);
    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.com'], await deadPort())] });
    const same = await sluice.sluice.reload();
    assert.deepEqual(same.Queues, [], 'a smart-host change is no table change');
    assert.equal(routedCount(sluice, id), 1);

    await sluice.rewriteConfig({ routes: [smartHost('backend', ['example.com'], await deadPort()), smartHost('nowhere', ['nowhere.test'], sink.port)] });
    const plan = await sluice.sluice.reload();
    assert.deepEqual(plan.Queues.find((q) => q.Identity === 'test/Unreachable'), {
      Identity: 'test/Unreachable',
      Action: 'resubmit',
      Reason: 'the routing table changed',
      Messages: 1,
      To: { 'test/nowhere': 1 },
    });
    await sink.waitFor(1);
  });

  it('refuses a broken config file and keeps the running one', async (t) => {
    const sink = await startSink(t);
    const sluice = await queued(t, [smartHost('backend', ['example.com'], sink.port)]);
    await sluice.rewriteConfig({ routes: [{ name: 'backend', match: ['example.com'], smartHosts: ['not a host'] }] });
    await assert.rejects(sluice.sluice.reload(), (error: unknown) => error instanceof ConfigError && /routes\[0\]\.smartHosts\[0\]/.test(error.message));
    const response = await fetch(`http://127.0.0.1:${sluice.sluice.management.address.port}/api/v1/config/reload`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    assert.equal(response.status, 400);
    assert.match(((await response.json()) as { detail: string }).detail, /routes\[0\]\.smartHosts\[0\] \(line \d+\)/);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('still'));
    await sink.waitFor(1);
  });
});

describe('listeners on reload (RT-3)', () => {
  it('adds, updates in place and removes listeners without dropping a session', async (t) => {
    const sluice = await startTestSluice(t, { routes: [] });
    const session = await SmtpClient.open(sluice.port);
    await sluice.rewriteConfig({
      routes: [],
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', maxRecipients: 1 }, { name: 'submission', listen: '127.0.0.1:0' }],
    });
    assert.deepEqual((await sluice.sluice.reload()).Listeners, [{ Name: 'inbound', Change: 'updated' }, { Name: 'submission', Change: 'added' }]);
    // the session from before goes on, under the new limit
    assert.equal((await session.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await session.command('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await session.command('RCPT TO:<c@example.com>')).code, 452);
    const added = sluice.sluice.listeners.find((l) => l.name === 'submission')!;
    (await SmtpClient.open(added.address.port)).close();

    await sluice.rewriteConfig({ routes: [], listeners: [{ name: 'submission', listen: '127.0.0.1:0' }] });
    assert.deepEqual((await sluice.sluice.reload()).Listeners, [{ Name: 'inbound', Change: 'removed' }]);
    assert.equal((await session.data(body('after removal'))).code, 250, 'a session in progress finishes on a removed listener');
    await assert.rejects(SmtpClient.connect(sluice.port), /ECONNREFUSED/);
  });

  it('goes back to the listener as it was when its replacement cannot bind, so mail still gets in', async (t) => {
    const sluice = await startTestSluice(t, { routes: [] });
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const busy = (blocker.address() as AddressInfo).port;
    await sluice.rewriteConfig({ routes: [], listeners: [{ name: 'inbound', listen: `127.0.0.1:${busy}` }] });
    assert.deepEqual((await sluice.sluice.reload()).Listeners, [{ Name: 'inbound', Change: 'replaced' }]);
    await sluice.waitForLog((e) => e.msg === 'listener could not start' && e.listener === 'inbound');
    const inbound = sluice.sluice.listeners.find((l) => l.name === 'inbound')!;
    assert.notEqual(inbound.address.port, busy);
    (await SmtpClient.open(inbound.address.port)).close();
  });
});
