// Nothing claimed is left behind (ST-5, MG-3, QU-6): an operator's action on
// an item a connection claimed but has not started is honoured; an error
// thrown in the categorizer, in a delivery connection or in a deadline run
// hands back what it claimed; a claim nobody renews comes back by itself,
// without a restart. Real Sluice, real SQLite, real sockets; the faults are
// injected by making one call of the real store throw once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { QueueStore } from '../../src/store/types.js';
import { apiJson } from '../support/api.js';
import { runClock, waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const route = (port: number, extra: Record<string, unknown> = {}) => ({ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${port}`], tls: 'none', ...extra });
const body = (subject: string) => `Subject: ${subject}\r\n\r\nHello.\r\n`;

/** The next call of this store method throws, once. */
function failOnce<K extends keyof QueueStore>(store: QueueStore, method: K): { failed: () => boolean } {
  const original = (store[method] as (...args: unknown[]) => unknown).bind(store);
  let failed = false;
  (store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
    if (failed) return original(...args);
    failed = true;
    return Promise.reject(new Error(`injected failure of ${String(method)}`));
  };
  return { failed: () => failed };
}

const statuses = async (sluice: TestSluice) => (await sluice.sluice.store.listMessages([], 100)).map((m) => `${m.subject}:${m.queue}:${m.status}`);
const nothingActive = async (sluice: TestSluice) => (await statuses(sluice)).every((s) => !s.endsWith(':Active'));
const emptied = (sluice: TestSluice) => waitUntil(async () => (await sluice.sluice.store.stats()).messages === 0);

describe('claims are never left behind (ST-5)', () => {
  it('honours suspend and remove on items a connection claimed but has not started (MG-3)', async (t) => {
    const sink = await startSink(t, { dataDelayMs: 1500 });
    await sink.stop();
    const sluice = await startTestSluice(t, { routes: [route(sink.port, { maxConnections: 1 })] });
    for (const subject of ['first', 'second', 'third']) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(subject));
    await waitUntil(async () => (await statuses(sluice)).filter((s) => s.includes(':backend:')).length === 3);
    await sink.restart();
    const api = (path: string, payload: unknown) => apiJson(sluice.sluice.management.address.port, 'POST', path, payload);
    await api('/api/v1/queues/retry', { identity: 'backend' });
    await sink.waitFor(1); // "first" is in DATA for 1.5 s; the other two were claimed with it
    assert.deepEqual(await api('/api/v1/messages/suspend', { filter: 'Subject -eq "second"' }), { Suspended: 0, PendingSuspend: 1 });
    assert.deepEqual(await api('/api/v1/messages/remove', { filter: 'Subject -eq "third"' }), { Removed: 0, PendingRemove: 1 });
    await sluice.waitForLog((e) => e.msg === 'removed');
    await waitUntil(async () => (await statuses(sluice)).includes('second:backend:Suspended'));
    assert.deepEqual(await statuses(sluice), ['second:backend:Suspended']);
    assert.deepEqual(sink.messages.map((m) => /Subject: (\w+)/.exec(m.body.toString())![1]), ['first']);
  });

  it('hands a categorizer batch back to Submission when routing throws, and routes it at the next wake (no crash counted)', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [route(sink.port)] });
    const injected = failOnce(sluice.sluice.store, 'routeMessages');
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('one'));
    await waitUntil(() => injected.failed());
    await sluice.waitForLog((e) => e.msg === 'categorizer run failed; retried at the next wake');
    await waitUntil(async () => (await statuses(sluice)).join() === 'one:Submission:Ready');
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('two'));
    await sink.waitFor(2);
    await emptied(sluice);
  });

  for (const method of ['beginAttempt', 'recordDelivery', 'claimDeliveries'] as const) {
    it(`hands a claimed item back when ${method} throws in a delivery connection, and delivers it`, async (t) => {
      const sink = await startSink(t);
      const sluice = await startTestSluice(t, { routes: [route(sink.port)] });
      const injected = failOnce(sluice.sluice.store, method);
      await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('retried'));
      await waitUntil(() => injected.failed());
      await waitUntil(async () => sink.messages.some((m) => m.body.includes('retried')));
      await emptied(sluice);
      assert.ok(await nothingActive(sluice));
      assert.equal((await sluice.sluice.store.listMessages([{ column: 'queue', operator: '-eq', value: 'Poison', text: true }], 10)).length, 0, 'no crash counted');
    });
  }

  it('hands expired items back when a deadline run throws, and expires them at the next run (DL-5)', async (t) => {
    const sluice = await startTestSluice(t, {
      routes: [route(1, { enabled: false })],
      bounceProfiles: { default: { maxQueueLifetime: '1h', delayNotification: '4h' } },
    });
    await SmtpClient.submit(sluice.port, '', ['b@example.com'], body('late'));
    await waitUntil(async () => (await statuses(sluice)).join() === 'late:Unreachable:Ready');
    const injected = failOnce(sluice.sluice.store, 'recordDelivery');
    await runClock(sluice, 3_600_000);
    await waitUntil(() => injected.failed());
    await sluice.waitForLog((e) => e.msg === 'deadline run failed');
    assert.deepEqual(await statuses(sluice), ['late:Unreachable:Ready'], 'handed back, not left Active');
    await runClock(sluice, 60_000);
    await emptied(sluice);
  });

  it('takes back a claim nobody renews once its lease expires, without a restart, and delivers it', async (t) => {
    const sink = await startSink(t, { holdRcpt: (address) => address.startsWith('hold') });
    const sluice = await startTestSluice(t, { routes: [route(sink.port, { maxConnections: 1 })], delivery: { commandTimeout: '20s' } });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['hold@example.com'], body('held'));
    await waitUntil(() => sink.held === 1); // the one connection is busy
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('stranded'));
    await sluice.waitForLog((e) => e.msg === 'routed' && e.queueId === id);
    // a holder that claims and then dies or forgets: nobody renews this lease
    const [stranded] = await sluice.sluice.store.claimDeliveries('backend', 10, sluice.clock.now());
    assert.equal(stranded?.message.id, id);
    assert.ok((await statuses(sluice)).includes('stranded:backend:Active'));
    await runClock(sluice, 31_000); // past the 30 s lease (the held attempt times out on the way)
    await sluice.waitForLog((e) => e.msg === 'expired leases taken back');
    await waitUntil(async () => sink.messages.some((m) => m.body.includes('stranded')));
    assert.equal(await sluice.sluice.store.recordDelivery(stranded!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 0), 'lost', 'the old holder is fenced out');
  });
});
