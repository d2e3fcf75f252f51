// Relaying to real sinks on loopback (RT-1, RT-2, QU-1..QU-5, DL-1, DL-2):
// smart hosts with failover, per-recipient outcomes, LMTP, FIFO after an
// outage, several next hops for one message, Unreachable.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { listQueues } from '../../src/management/queues.js';
import { bodyOf } from '../store/conformance.js';
import { selfSignedCert } from '../support/certs.js';
import { waitUntil } from '../support/clock.js';
import { deadPort, startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const body = (subject: string) => `From: a@example.net\r\nSubject: ${subject}\r\n\r\nHello ${subject}.\r\n..a line that starts with a dot\r\n`;

const smartHostRoute = (name: string, match: string[], ports: number[], extra: Record<string, unknown> = {}) => ({
  name,
  match,
  smartHosts: ports.map((p) => `127.0.0.1:${p}`),
  tls: 'none',
  ...extra,
});

const queueNamed = (sluice: TestSluice, name: string) => sluice.sluice.delivery.queues().find((q) => q.name === name);

describe('delivery to smart hosts (RT-1, DL-1, DL-2)', () => {
  it('relays the bytes exactly as received plus our Received header, with the envelope and DSN parameters, then forgets the message', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port])] });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('MAIL FROM:<a@example.net> RET=HDRS ENVID=env42')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com')).code, 250);
    const reply = await client.data(body('one'));
    client.close();
    const id = /queued as (\w+)/.exec(reply.text)![1]!;
    const [sunk] = await sink.waitFor(1);
    const stored = (sunk!.body.toString('latin1'));
    assert.match(stored, new RegExp(`^Received: from client\\.test .*\\r\\n\\tby sluice\\.test \\(Sluice\\) with ESMTP id ${id}\\r\\n`));
    assert.ok(stored.endsWith(`\r\n${body('one')}`), 'original bytes follow the Received header unchanged');
    assert.equal(sunk!.from, 'a@example.net');
    assert.deepEqual(sunk!.to, ['b@example.com']);
    assert.equal(sunk!.dsn.ret, 'HDRS');
    assert.equal(sunk!.dsn.envid, 'env42');
    assert.deepEqual(sunk!.dsn.recipients, [{ notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;b@example.com' }]);
    await waitUntil(async () => (await sluice.sluice.store.getMessage(id)) === undefined);
    assert.equal((await sluice.sluice.store.stats()).messages, 0, 'delivered messages leave the store');
    const db = new Sqlite(join(sluice.dataDir, 'queue.db'), { readonly: true });
    t.after(() => db.close());
    assert.equal((db.prepare('SELECT count(*) AS n FROM body_chunks').get() as { n: number }).n, 0, 'and their body too');
  });

  it('delivers a multi-chunk body byte-identically', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port])] });
    const big = `Subject: big\r\n\r\n${('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(2) + '\r\n').repeat(40_000)}`;
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], big);
    const [sunk] = await sink.waitFor(1);
    assert.ok(sunk!.body.toString('latin1').endsWith(`\r\n${big}`));
    assert.equal(sunk!.body.length - sunk!.body.indexOf('Subject: big'), Buffer.byteLength(big));
  });

  it('fails over to the next smart host when the first cannot be reached', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [await deadPort(), sink.port])] });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('failover'));
    await sink.waitFor(1);
    assert.equal(queueNamed(sluice, 'backend')?.consecutiveFailures, 0);
  });

  it('reuses one connection for many messages and sends many recipients in one transaction', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port], { maxConnections: 1 })] });
    for (let i = 0; i < 5; i++) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com', 'c@example.com', 'd@example.com'], body(`m${i}`));
    const sunk = await sink.waitFor(5);
    assert.ok(sink.connections < 5, `expected connection reuse, got ${sink.connections} connections for 5 messages`);
    assert.ok(sunk.every((m) => m.to.length === 3));
  });

  it('records per-recipient outcomes: 2xx delivered, 5xx failed, 4xx deferred and retried later (DL-2)', async (t) => {
    let deferSays = '450 4.2.1 Mailbox busy, try later';
    const sink = await startSink(t, {
      rcptReply: (address) => (address.startsWith('reject') ? '550 5.1.1 No such user' : address.startsWith('defer') ? deferSays || undefined : undefined),
    });
    const sluice = await startTestSluice(t, {
      routes: [smartHostRoute('backend', ['example.com'], [sink.port], { bounceProfile: 'quick' })],
      bounceProfiles: { quick: { initialRetry: '30s', backoff: 2, maxRetry: '10m' } },
    });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['ok@example.com', 'reject@example.com', 'defer@example.com'], body('mixed'));
    const [first] = await sink.waitFor(1);
    assert.deepEqual(first!.to, ['ok@example.com']);
    await sluice.waitForLog((e) => e.msg === 'deferred' && e.queueId === id);
    const failed = await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === id);
    assert.deepEqual(failed.recipients, ['reject@example.com']);
    assert.match(String(failed.reply), /^550 5\.1\.1 /);
    const waiting = await sluice.sluice.store.getMessage(id);
    assert.deepEqual(waiting?.recipients.map((r) => [r.address, r.status]), [['ok@example.com', 'Delivered'], ['reject@example.com', 'Failed'], ['defer@example.com', 'Ready']]);
    assert.match(waiting!.recipients[2]!.lastReply!, /^450 4\.2\.1 /);

    deferSays = '';
    sluice.clock.advance(29_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(sink.messages.length, 1, 'not retried before initialRetry');
    sluice.clock.advance(1_000);
    const [, second] = await sink.waitFor(2);
    assert.deepEqual(second!.to, ['defer@example.com'], 'only the deferred recipient is retried');
    await waitUntil(async () => (await sluice.sluice.store.getMessage(id)) === undefined);
  });

  it('speaks LMTP and takes one DATA reply per recipient', async (t) => {
    const sink = await startSink(t, { lmtp: true, lmtpReply: (address) => (address.startsWith('full') ? '452 4.2.2 Mailbox full' : address.startsWith('gone') ? '550 5.1.1 Gone' : undefined) });
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('store', ['example.com'], [sink.port], { protocol: 'lmtp' })] });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['ok@example.com', 'full@example.com', 'gone@example.com'], body('lmtp'));
    await sink.waitFor(1);
    await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === id);
    const message = await sluice.sluice.store.getMessage(id);
    assert.deepEqual(message?.recipients.map((r) => r.status), ['Delivered', 'Ready', 'Failed']);
  });

  it('uses STARTTLS as the route requires, and waits rather than send in the clear when TLS is required but missing', async (t) => {
    const tls = await selfSignedCert(t);
    const secureSink = await startSink(t, { tls });
    const plainSink = await startSink(t);
    const sluice = await startTestSluice(t, {
      routes: [
        smartHostRoute('secure', ['secure.example'], [secureSink.port], { tls: 'required' }),
        smartHostRoute('opportunistic', ['opp.example'], [secureSink.port], { tls: 'opportunistic' }),
        smartHostRoute('plain-required', ['plain.example'], [plainSink.port], { tls: 'required' }),
      ],
    });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@secure.example'], body('tls'));
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@opp.example'], body('opp'));
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@plain.example'], body('plain'));
    const sunk = await secureSink.waitFor(2);
    assert.ok(sunk.every((m) => m.secure));
    await waitUntil(() => queueNamed(sluice, 'plain-required')?.status === 'Retry');
    assert.equal(plainSink.messages.length, 0);
    assert.ok(await sluice.sluice.store.getMessage(id), 'the message waits');
  });
});

describe('delivery queues (QU-1..QU-5)', () => {
  it('holds mail while the next hop is down, then delivers the oldest first when it comes back (QU-5, DL-3)', async (t) => {
    const sink = await startSink(t);
    await sink.stop();
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port], { maxConnections: 1 })] });
    for (let i = 0; i < 6; i++) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(`fifo ${i}`));
    await waitUntil(() => queueNamed(sluice, 'backend')?.status === 'Retry');
    await sluice.sluice.categorized();
    const queue = queueNamed(sluice, 'backend')!;
    assert.match(queue.lastError!, /ECONNREFUSED/);
    assert.equal(queue.nextRetryTime! - queue.lastRetryTime!, 60_000, 'glitch retry after 1 minute');
    const listed = await listQueues({ node: 'test', store: sluice.sluice.store, delivery: sluice.sluice.delivery, clock: sluice.clock });
    const backend = listed.find((q) => q.Identity === 'test/backend');
    assert.deepEqual({ ...backend, LastError: undefined, LastRetryTime: undefined, NextRetryTime: undefined }, {
      Identity: 'test/backend',
      DeliveryType: 'SmartHostConnectorDelivery',
      NextHopDomain: 'backend',
      NextHopConnector: 'backend',
      Status: 'Retry',
      MessageCount: 6,
      LastError: undefined,
      LastRetryTime: undefined,
      NextRetryTime: undefined,
    });
    assert.equal(Date.parse(backend!.NextRetryTime!) - Date.parse(backend!.LastRetryTime!), 60_000);
    assert.deepEqual(listed.find((q) => q.Identity === 'test/Submission')?.MessageCount, 0);

    await sink.restart();
    sluice.clock.advance(60_000);
    const sunk = await sink.waitFor(6);
    assert.deepEqual(sunk.map((m) => /Subject: (.*)\r\n/.exec(m.body.toString())![1]), [0, 1, 2, 3, 4, 5].map((i) => `fifo ${i}`));
    assert.equal(queueNamed(sluice, 'backend')?.consecutiveFailures, 0);
  });

  it('a dead next hop does not slow a live one', async (t) => {
    const live = await startSink(t);
    const sluice = await startTestSluice(t, {
      routes: [smartHostRoute('dead', ['dead.example'], [await deadPort()]), smartHostRoute('live', ['live.example'], [live.port])],
    });
    for (let i = 0; i < 5; i++) await SmtpClient.submit(sluice.port, 'a@example.net', ['x@dead.example'], body(`dead ${i}`));
    for (let i = 0; i < 5; i++) await SmtpClient.submit(sluice.port, 'a@example.net', ['x@live.example'], body(`live ${i}`));
    await live.waitFor(5, 5000);
    await waitUntil(() => queueNamed(sluice, 'dead')?.status === 'Retry');
  });

  it('splits a message for two next hops into two routed items that share one stored body (QU-4)', async (t) => {
    const one = await startSink(t);
    const two = await startSink(t);
    await two.stop();
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('one', ['one.example'], [one.port]), smartHostRoute('two', ['two.example'], [two.port])] });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['a@one.example', 'b@two.example', 'c@one.example'], body('split'));
    const [sunk] = await one.waitFor(1);
    assert.deepEqual(sunk!.to, ['a@one.example', 'c@one.example']);
    await waitUntil(() => queueNamed(sluice, 'two')?.status === 'Retry');
    const db = new Sqlite(join(sluice.dataDir, 'queue.db'), { readonly: true });
    t.after(() => db.close());
    assert.equal((db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n, 1, 'the item for one.example is done, two.example waits');
    assert.ok((await bodyOf(sluice.sluice.store, id)).toString().includes('Hello split'));
    await two.restart();
    sluice.clock.advance(60_000);
    const [other] = await two.waitFor(1);
    assert.deepEqual(other!.to, ['b@two.example']);
    assert.ok(other!.body.equals(sunk!.body), 'both next hops got the same bytes');
    await waitUntil(async () => (await sluice.sluice.store.getMessage(id)) === undefined);
  });

  it('sends recipients with no route, or a disabled one, to Unreachable with the reason, never a bounce (RT-2, QU-7)', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port]), smartHostRoute('off', ['off.example'], [sink.port], { enabled: false })] });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com', 'x@nowhere.example', 'y@off.example'], body('unreachable'));
    await sink.waitFor(1);
    const queues = await sluice.sluice.store.listQueues();
    assert.equal(queues.find((q) => q.name === 'Unreachable')?.messageCount, 1);
    const routed = await sluice.waitForLog((e) => e.msg === 'routed' && e.queueId === id);
    assert.match(String(routed.unreachable), /no route matches nowhere\.example/);
    const message = await sluice.sluice.store.getMessage(id);
    assert.deepEqual(message?.recipients.map((r) => r.status), ['Delivered', 'Ready', 'Ready']);
    sluice.clock.advance(24 * 3_600_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(sink.messages.length, 1, 'nothing leaves Unreachable by timer');
  });

  it('fails recipients of a route whose size limit the message exceeds', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('small', ['example.com'], [sink.port], { maxMessageSize: '1KB' })] });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], `Subject: big\r\n\r\n${'x'.repeat(70)}\r\n`.repeat(20));
    await sluice.waitForLog((e) => e.msg === 'routed' && e.queueId === id && e.failed === 1);
    await waitUntil(async () => (await sluice.sluice.store.getMessage(id)) === undefined);
    assert.equal(sink.messages.length, 0);
  });

  it('removes a delivery queue 3 minutes after it empties (QU-1)', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [smartHostRoute('backend', ['example.com'], [sink.port])] });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('gone soon'));
    await sink.waitFor(1);
    await sluice.waitForLog((e) => e.msg === 'delivered');
    await new Promise((resolve) => setTimeout(resolve, 200)); // the connection finds the queue empty
    sluice.clock.advance(2 * 60_000);
    assert.ok(queueNamed(sluice, 'backend'));
    sluice.clock.advance(60_000);
    await waitUntil(() => queueNamed(sluice, 'backend') === undefined);
    assert.equal((await sluice.sluice.store.listQueues()).some((q) => q.name === 'backend'), false);
  });
});
