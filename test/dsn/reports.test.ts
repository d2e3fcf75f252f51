// Delivery status notifications end to end (DS-1..DS-3, DL-4..DL-6): reports are
// delivered to the sender's next hop (a real sink), read with Python's email
// package, and every schedule is driven by the test clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runClock, settle } from '../support/clock.js';
import { parseReport, type ParsedReport } from '../support/dsn.js';
import { deadPort, startSink, type Sink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const HOUR = 3_600_000;
const BODY = 'From: a@example.net\r\nTo: x@example.com\r\nSubject: Original subject\r\nMessage-ID: <orig@example.net>\r\n\r\nThe original body.\r\n';

/** Recipients' next hop `example.com` → `next`, senders' domain `example.net` → `mailbox` (where reports arrive). */
async function setup(t: Parameters<typeof startTestSluice>[0], next: SinkOptions, extra: Record<string, unknown> = {}, nextRoute: Record<string, unknown> = {}) {
  const recipientSink = await startSink(t, next);
  const mailbox = await startSink(t);
  const sluice = await startTestSluice(t, {
    routes: [
      { name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${recipientSink.port}`], tls: 'none', ...nextRoute },
      { name: 'senders', match: ['example.net'], smartHosts: [`127.0.0.1:${mailbox.port}`], tls: 'none' },
    ],
    ...extra,
  });
  return { recipientSink, mailbox, sluice };
}

async function submitWith(sluice: TestSluice, mail: string, rcpts: string[]): Promise<string> {
  const client = await SmtpClient.open(sluice.port);
  try {
    assert.equal((await client.command(`MAIL FROM:${mail}`)).code, 250);
    for (const rcpt of rcpts) assert.equal((await client.command(`RCPT TO:${rcpt}`)).code, 250);
    const reply = await client.data(BODY);
    assert.equal(reply.code, 250);
    return /queued as (\w+)/.exec(reply.text)![1]!;
  } finally {
    client.close();
  }
}

const reportsIn = (mailbox: Sink): ParsedReport[] => mailbox.messages.map((m) => parseReport(m.body));

/**
 * Waits for `count` reports while test time goes on a minute at a time: on a busy machine a step of the work
 * (a store call, a delivery attempt) may have backed off to a later time that a stopped clock never reaches.
 */
async function reportsAfter(sluice: TestSluice, mailbox: Sink, count: number): Promise<ParsedReport[]> {
  for (let minute = 0; minute < 30 && mailbox.messages.length < count; minute++) await runClock(sluice, 60_000);
  await mailbox.waitFor(count);
  return reportsIn(mailbox);
}

describe('non-delivery reports (DS-1, DS-2, DL-2)', () => {
  it('reports a 5xx refusal with every RFC 3464 field, returning only the headers for RET=HDRS', async (t) => {
    const { mailbox, sluice } = await setup(t, { rcptReply: (a) => (a.startsWith('bad') ? '550 5.1.1 No such user here' : undefined) });
    const id = await submitWith(sluice, '<a@example.net> RET=HDRS ENVID=QQ314159', ['<bad@example.com> ORCPT=rfc822;bad@example.com', '<good@example.com>', '<bad2@example.com>']);
    const [sunk] = await mailbox.waitFor(1);
    assert.equal(sunk!.from, '', 'reports are sent from the null sender');
    assert.deepEqual(sunk!.to, ['a@example.net']);
    const report = parseReport(sunk!.body);
    assert.equal(report.content_type, 'multipart/report');
    assert.equal(report.report_type, 'delivery-status');
    assert.deepEqual(report.part_types, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    assert.equal(report.auto_submitted, 'auto-replied');
    assert.match(report.human, /could not be delivered/);
    assert.equal(report.per_message['Reporting-MTA'], 'dns; test');
    assert.equal(report.per_message['Original-Envelope-Id'], 'QQ314159');
    assert.match(report.per_message['Arrival-Date']!, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
    assert.equal(report.recipients.length, 2, 'one report lists every failed recipient of the event (DS-2)');
    const [first, second] = report.recipients;
    assert.equal(first!['Final-Recipient'], 'rfc822; bad@example.com');
    assert.equal(first!['Original-Recipient'], 'rfc822; bad@example.com');
    assert.equal(first!.Action, 'failed');
    assert.equal(first!.Status, '5.1.1');
    assert.equal(first!['Remote-MTA'], 'dns; 127.0.0.1');
    assert.equal(first!['Diagnostic-Code'], 'smtp; 550 5.1.1 No such user here');
    assert.ok(first!['Last-Attempt-Date']);
    assert.equal(second!['Final-Recipient'], 'rfc822; bad2@example.com');
    assert.match(report.original_headers!, /Subject: Original subject/);
    assert.doesNotMatch(report.original_headers!, /The original body/);
    assert.match(report.original_headers!, new RegExp(`id ${id}`), 'our Received header is part of the returned headers');
  });

  it('returns the whole message for RET=FULL (the default)', async (t) => {
    const { mailbox, sluice } = await setup(t, { rcptReply: () => '554 5.7.1 Refused' });
    await submitWith(sluice, '<a@example.net>', ['<x@example.com>']);
    const [report] = reportsIn(await mailbox.waitFor(1).then(() => mailbox));
    assert.deepEqual(report!.part_types, ['text/plain', 'message/delivery-status', 'message/rfc822']);
    assert.equal(report!.original_subject, 'Original subject');
    assert.equal(report!.original_body!.trim(), 'The original body.');
    assert.equal(report!.recipients[0]!.Status, '5.7.1');
  });

  it('reports a message too big for its route (RT-2)', async (t) => {
    const { mailbox, sluice } = await setup(t, {}, {}, { maxMessageSize: '100B' });
    await submitWith(sluice, '<a@example.net>', ['<x@example.com>']);
    const [report] = reportsIn(await mailbox.waitFor(1).then(() => mailbox));
    assert.equal(report!.recipients[0]!.Status, '5.3.4');
    assert.match(report!.recipients[0]!['Diagnostic-Code']!, /^smtp; 552 5\.3\.4 /);
  });

  it('sends nothing to the null sender, honours NOTIFY=NEVER, and never reports a report (DS-3)', async (t) => {
    const { mailbox, sluice } = await setup(t, { rcptReply: () => '550 5.1.1 No such user' });
    const fromNull = await submitWith(sluice, '<>', ['<x@example.com>']);
    const never = await submitWith(sluice, '<a@example.net>', ['<y@example.com> NOTIFY=NEVER']);
    await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === fromNull);
    await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === never);
    await settle(200);
    assert.equal(mailbox.messages.length, 0);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
  });

  it('drops a report that cannot be delivered, without a report about it', async (t) => {
    const recipientSink = await startSink(t, { rcptReply: () => '550 5.1.1 No such user' });
    const senderSide = await startSink(t, { rcptReply: () => '550 5.1.1 Sender mailbox gone too' });
    const sluice = await startTestSluice(t, {
      routes: [
        { name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${recipientSink.port}`], tls: 'none' },
        { name: 'senders', match: ['example.net'], smartHosts: [`127.0.0.1:${senderSide.port}`], tls: 'none' },
      ],
    });
    const id = await submitWith(sluice, '<a@example.net>', ['<x@example.com>']);
    const dsn = await sluice.waitForLog((e) => e.msg === 'dsn' && e.queueId === id);
    await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === dsn.report);
    await settle(200);
    assert.equal(sluice.logs.filter((e) => e.msg === 'dsn').length, 1);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
  });
});

describe('success reports (DS-1, NOTIFY=SUCCESS)', () => {
  it('reports "delivered" after LMTP, "relayed" to a next hop without DSN, and nothing when the next hop takes NOTIFY itself', async (t) => {
    const lmtp = await setup(t, { lmtp: true }, {}, { protocol: 'lmtp' });
    await submitWith(lmtp.sluice, '<a@example.net>', ['<x@example.com> NOTIFY=SUCCESS']);
    const [delivered] = reportsIn(await lmtp.mailbox.waitFor(1).then(() => lmtp.mailbox));
    assert.equal(delivered!.recipients[0]!.Action, 'delivered');
    assert.equal(delivered!.recipients[0]!.Status, '2.6.0');
    assert.equal(delivered!.auto_submitted, 'auto-generated');

    const plain = await setup(t, { hideDsn: true });
    await submitWith(plain.sluice, '<a@example.net>', ['<x@example.com> NOTIFY=SUCCESS,FAILURE']);
    const [relayed] = reportsIn(await plain.mailbox.waitFor(1).then(() => plain.mailbox));
    assert.equal(relayed!.recipients[0]!.Action, 'relayed');

    const dsnAware = await setup(t, {});
    const id = await submitWith(dsnAware.sluice, '<a@example.net>', ['<x@example.com> NOTIFY=SUCCESS']);
    const [passedOn] = await dsnAware.recipientSink.waitFor(1);
    assert.deepEqual(passedOn!.dsn.recipients, [{ notify: ['SUCCESS'] }]);
    await dsnAware.sluice.waitForLog((e) => e.msg === 'delivered' && e.queueId === id);
    await settle(200);
    assert.equal(dsnAware.mailbox.messages.length, 0);
  });
});

describe('retry schedule, delay notice and expiry (DL-4, DL-5, DL-6)', () => {
  it('retries on the bounce profile schedule, sends one delay notice at 4 h, and bounces with 4.4.7 at 72 h', { timeout: 120_000 }, async (t) => {
    const attempts = new Map<string, number[]>();
    let sluice: TestSluice | undefined;
    const { mailbox, sluice: started } = await setup(t, {
      rcptReply: (address) => {
        attempts.set(address, [...(attempts.get(address) ?? []), sluice!.clock.now()]);
        return '451 4.3.0 Temporary trouble';
      },
    });
    sluice = started;
    const start = sluice.clock.now();
    await submitWith(sluice, '<a@example.net> ENVID=default', ['<slow@example.com>']);
    await submitWith(sluice, '<a@example.net> ENVID=never', ['<never@example.com> NOTIFY=NEVER']);
    await submitWith(sluice, '<a@example.net> ENVID=failure', ['<failure@example.com> NOTIFY=FAILURE']);
    while (sluice.logs.filter((e) => e.msg === 'deferred').length < 3) await settle(20);

    await runClock(sluice, 3 * HOUR);
    const offsets = attempts.get('slow@example.com')!.map((at) => (at - start) / 1000);
    assert.deepEqual(offsets, [0, 60, 180, 420, 900, 1860, 3780, 7380], 'initial 60 s, doubling, at most 3600 s');
    assert.equal(mailbox.messages.length, 0, 'no notice before 4 h');

    await runClock(sluice, 1 * HOUR + 1000);
    await mailbox.waitFor(1);
    const delays = reportsIn(mailbox);
    assert.equal(delays.length, 1, 'one delay notice, only for the recipient whose NOTIFY allows it');
    const delay = delays[0]!;
    assert.equal(delay.per_message['Original-Envelope-Id'], 'default');
    assert.equal(delay.recipients[0]!.Action, 'delayed');
    assert.equal(delay.recipients[0]!.Status, '4.3.0');
    assert.equal(delay.recipients[0]!['Diagnostic-Code'], 'smtp; 451 4.3.0 Temporary trouble');
    assert.equal(Date.parse(delay.recipients[0]!['Will-Retry-Until']!), start + 72 * HOUR);
    assert.equal(delay.auto_submitted, 'auto-replied');
    assert.deepEqual(delay.part_types, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);

    await runClock(sluice, 69 * HOUR);
    await mailbox.waitFor(3);
    const finals = reportsIn(mailbox).slice(1);
    assert.deepEqual(finals.map((r) => r.per_message['Original-Envelope-Id']).sort(), ['default', 'failure'], 'NOTIFY=NEVER gets nothing');
    for (const report of finals) {
      assert.equal(report.recipients[0]!.Action, 'failed');
      assert.equal(report.recipients[0]!.Status, '4.4.7');
      assert.equal(report.recipients[0]!['Diagnostic-Code'], 'smtp; 451 4.3.0 Temporary trouble');
    }
    const lastAttempt = attempts.get('slow@example.com')!.at(-1)!;
    assert.ok(lastAttempt - start <= 72 * HOUR);
    const count = attempts.get('slow@example.com')!.length;
    await runClock(sluice, 2 * HOUR);
    assert.equal(attempts.get('slow@example.com')!.length, count, 'no attempt after expiry');
    assert.equal(reportsIn(mailbox).length, 3);
    await settle(100);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
  });

  it('expires recipients waiting in Unreachable with a 4.4.7 report naming the reason', { timeout: 60_000 }, async (t) => {
    const { mailbox, sluice } = await setup(t, {});
    await submitWith(sluice, '<a@example.net>', ['<x@nowhere.example>']);
    await runClock(sluice, 72 * HOUR + 1000);
    const reports = await reportsAfter(sluice, mailbox, 2);
    assert.deepEqual(reports.map((r) => r.recipients[0]!.Action), ['delayed', 'failed']);
    assert.equal(reports[1]!.recipients[0]!.Status, '4.4.7');
    assert.match(reports[1]!.recipients[0]!['Diagnostic-Code']!, /no route matches nowhere\.example/);
  });

  it('fails a recipient with 4.4.7 once maxRetries attempts were made', { timeout: 60_000 }, async (t) => {
    const { mailbox, sluice } = await setup(
      t,
      { rcptReply: () => '452 4.2.2 Mailbox full' },
      { bounceProfiles: { default: { maxRetries: 3, initialRetry: '1m', backoff: 1 } } },
    );
    await submitWith(sluice, '<a@example.net>', ['<x@example.com>']);
    await runClock(sluice, 10 * 60_000);
    const [report] = reportsIn(await mailbox.waitFor(1).then(() => mailbox));
    assert.equal(report!.recipients[0]!.Status, '4.4.7');
    assert.equal(report!.recipients[0]!['Diagnostic-Code'], 'smtp; 452 4.2.2 Mailbox full');
  });
});

describe('delay notices for internal and external senders (DL-6)', () => {
  it('sends no delay notice to external senders when dsn.externalDelay is off, but still the final report', { timeout: 60_000 }, async (t) => {
    const { mailbox, sluice } = await setup(t, { rcptReply: () => '451 4.3.0 Later' }, { dsn: { externalDelay: false }, acceptedDomains: ['example.org'] });
    await submitWith(sluice, '<a@example.net>', ['<x@example.com>']);
    await runClock(sluice, 72 * HOUR + 1000);
    const reports = reportsIn(await mailbox.waitFor(1).then(() => mailbox));
    assert.deepEqual(reports.map((r) => r.recipients[0]!.Action), ['failed']);
  });
});

describe('idle resubmit (DL-7)', () => {
  it('sends the messages of a queue that delivered nothing for 12 h in Retry back to the categorizer', { timeout: 60_000 }, async (t) => {
    const sluice = await startTestSluice(t, {
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${await deadPort()}`], tls: 'none' }],
      dsn: { externalDelay: false },
    });
    const id = await SmtpClient.submit(sluice.port, '', ['x@example.com'], BODY);
    await runClock(sluice, 11 * HOUR);
    assert.equal(sluice.logs.filter((e) => e.msg === 'routed' && e.queueId === id).length, 1);
    await runClock(sluice, 1 * HOUR + 10 * 60_000); // the first retry at or after 12 h
    const resubmitted = await sluice.waitForLog((e) => e.msg === 'queue resubmitted');
    assert.equal(resubmitted.queue, 'backend');
    assert.equal(resubmitted.messages, 1);
    await sluice.waitForLog((e) => e.msg === 'routed' && e.queueId === id && sluice.logs.filter((l) => l.msg === 'routed' && l.queueId === id).length === 2);
    assert.ok(await sluice.sluice.store.getMessage(id), 'nothing is lost on the way');
  });
});

describe('queue-level connection retry on the wire (DL-3)', () => {
  it('tries a next hop that refuses connections 4 x every minute, 6 x every 5 minutes, then every 10 minutes, and resets on success', { timeout: 60_000 }, async (t) => {
    const tries: number[] = [];
    let refusing = true;
    let sluice: TestSluice | undefined;
    const sink = await startSink(t, {
      onConnection: () => {
        tries.push(sluice!.clock.now());
        return refusing ? '421 4.3.2 Service not available' : undefined;
      },
    });
    sluice = await startTestSluice(t, { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] });
    const start = sluice.clock.now();
    await SmtpClient.submit(sluice.port, '', ['x@example.com'], BODY);
    await runClock(sluice, 65 * 60_000);
    const minutes = tries.map((at) => (at - start) / 60_000);
    assert.deepEqual(minutes, [0, 1, 2, 3, 4, 9, 14, 19, 24, 29, 34, 44, 54, 64]);
    assert.match(sluice.sluice.delivery.queues()[0]!.lastError!, /^421 4\.3\.2 /);

    refusing = false;
    await runClock(sluice, 10 * 60_000);
    await sink.waitFor(1);
    assert.equal(sluice.sluice.delivery.queues()[0]!.consecutiveFailures, 0);
  });
});
