// Operating the queues through the management API against real sinks (MG-2,
// MG-3, MG-5, IN-7, QU-3): queue suspend, resume, retry and resubmit; message
// list, show, suspend, resume, export and remove with and without NDR;
// PendingSuspend and PendingRemove on a slow next hop; listener suspension;
// the tracking log and counters; bad input answered with 4xx problem JSON.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { callApi, type Json } from '../support/api.js';
import { settle, waitUntil } from '../support/clock.js';
import { startSink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { TEST_TOKEN, startTestSluice } from '../support/sluice.js';

interface Listed {
  messages: Array<Json & { Identity: string; Status: string; Recipients: Array<{ Address: string; Status: string; LastError: string | null }> }>;
  truncated: boolean;
}

const body = (subject: string) => `From: a@example.net\r\nMessage-ID: <${subject}@example.net>\r\nSubject: ${subject}\r\n\r\nHello ${subject}.\r\n`;

/** A Sluice whose `backend` route (example.com) goes to one sink and whose senders (example.net) get their reports at another. */
async function operated(t: TestContext, sinkOptions: SinkOptions = {}) {
  const sink = await startSink(t, sinkOptions);
  const reports = await startSink(t);
  const route = (name: string, match: string, port: number) => ({ name, match: [match], smartHosts: [`127.0.0.1:${port}`], tls: 'none', maxConnections: 1 });
  const sluice = await startTestSluice(t, { routes: [route('backend', 'example.com', sink.port), route('senders', 'example.net', reports.port)] });
  const base = `http://127.0.0.1:${sluice.sluice.management.address.port}`;
  const call = <T = Json>(method: 'GET' | 'POST', path: string, payload?: unknown, token = TEST_TOKEN) =>
    callApi<T>(sluice.sluice.management.address.port, method, path, payload, token);
  const list = async (query = '') => (await call<Listed>('GET', `/api/v1/messages${query}`)).json.messages;
  /** The status of a message in the backend queue (while it is categorized, it is Active in Submission). */
  const statusOf = async (id: string) => (await list(`?filter=${encodeURIComponent(`Id -eq "${id}" -and Queue -eq backend`)}`))[0]?.Status;
  const track = async (queueId: string) => (await call<{ events: Json[] }>('GET', `/api/v1/tracking?queueId=${queueId}`)).json.events.map((e) => e.event);
  return { sink, reports, sluice, base, call, list, statusOf, track };
}

describe('queue actions (MG-2)', () => {
  it('retries a queue now, suspends and resumes it, resubmits it, and counts what happened (MG-5)', async (t) => {
    const { sink, sluice, base, call, track } = await operated(t);
    await sink.stop();
    const first = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('first'));
    await waitUntil(() => sluice.sluice.delivery.queues().find((q) => q.name === 'backend')?.status === 'Retry');

    // retry now: no need to wait for the 1-minute timer (the test clock never moves here)
    await sink.restart();
    const retried = await call('POST', '/api/v1/queues/retry', { identity: 'test/backend' });
    assert.deepEqual(retried, { status: 200, json: { queues: [{ Identity: 'test/backend', Action: 'retry', Messages: 0 }] } });
    await sink.waitFor(1);

    const suspended = await call('POST', '/api/v1/queues/suspend', { filter: 'NextHopConnector -eq "backend"' });
    assert.deepEqual(suspended.json, { queues: [{ Identity: 'test/backend', Action: 'suspend' }] });
    const second = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('second'));
    await settle(300);
    assert.equal(sink.messages.length, 1, 'a suspended queue takes mail but delivers none');
    const queues = (await call<Array<Json>>('GET', '/api/v1/queues?filter=Status%20-eq%20Suspended')).json;
    assert.deepEqual(queues.map((q) => [q.Identity, q.MessageCount]), [['test/backend', 1]]);
    assert.deepEqual((await call('POST', '/api/v1/queues/resume', { identity: 'backend' })).json, { queues: [{ Identity: 'test/backend', Action: 'resume' }] });
    await sink.waitFor(2);

    // resubmit: the waiting messages go back through the categorizer
    await sink.stop();
    const third = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('third'));
    await waitUntil(() => sluice.sluice.delivery.queues().find((q) => q.name === 'backend')?.status === 'Retry');
    const resubmitted = await call('POST', '/api/v1/queues/retry', { identity: 'test/backend', resubmit: true });
    assert.deepEqual(resubmitted.json, { queues: [{ Identity: 'test/backend', Action: 'resubmit', Messages: 1 }] });
    await waitUntil(async () => (await track(third)).filter((e) => e === 'routed').length === 2);

    assert.deepEqual(await track(first), ['received', 'routed', 'delivered']);
    assert.deepEqual(await track(second), ['received', 'routed', 'delivered']);
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } })).text();
    assert.match(metrics, /^sluice_messages_accepted_total\{listener="inbound"\} 3$/m);
    assert.match(metrics, /^sluice_recipients_total\{outcome="delivered"\} 2$/m);
    assert.match(metrics, /^sluice_delivery_latency_seconds_count 2$/m);
  });

  it('refuses what it cannot do with a clear 4xx, and every route without the token', async (t) => {
    const { sluice, call } = await operated(t);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('x'));
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['/api/v1/queues/suspend', { identity: 'test/nowhere' }, 404, /no queue test\/nowhere/],
      ['/api/v1/queues/suspend', { identity: 'test/Submission' }, 409, /Submission queue does not take suspend/],
      ['/api/v1/queues/suspend', {}, 400, /give an identity or a filter/],
      ['/api/v1/queues/suspend', { identity: 'backend', filter: 'Status -eq Ready' }, 400, /not both/],
      ['/api/v1/queues/resume', { identity: 'backend', resubmit: true }, 400, /resubmit goes with retry only/],
      ['/api/v1/queues/suspend', { filter: 'Colour -eq "red"' }, 400, /unknown property "Colour"/],
      ['/api/v1/queues/explode', { identity: 'backend' }, 400, /must be equal to one of the allowed values/],
      ['/api/v1/messages/suspend', { identity: 'NOSUCHID' }, 404, /no message NOSUCHID/],
      ['/api/v1/messages/suspend', { identity: 'a/b' }, 400, /is not a message identity/],
      ['/api/v1/messages/suspend', { identity: 'other-node/backend/X' }, 404, /on node test/],
      ['/api/v1/messages/resume', { identity: 'X', ndr: true }, 400, /ndr goes with remove only/],
      ['/api/v1/messages/remove', { identity: 'X', colour: 'red' }, 400, /must NOT have additional properties/],
      ['/api/v1/messages/remove', '{"identity": ', 400, /JSON/],
      ['/api/v1/listeners/nowhere/suspend', {}, 404, /no listener "nowhere" \(listeners: inbound\)/],
    ];
    for (const [path, payload, status, detail] of cases) {
      const { status: got, json } = await call('POST', path, payload);
      assert.equal(got, status, `${path} ${JSON.stringify(payload)}: ${JSON.stringify(json)}`);
      assert.equal(json.status, status);
      assert.match(String(json.detail), detail);
    }
    const gets: Array<[string, number, RegExp]> = [
      ['/api/v1/messages?identity=NOSUCHID', 404, /no message NOSUCHID/],
      ['/api/v1/messages?filter=Size%20-gt%20lots', 400, /expected a size/],
      ['/api/v1/messages?limit=0', 400, /limit must be >= 1/],
      ['/api/v1/messages/export', 400, /must have required property 'identity'/],
      ['/api/v1/tracking', 400, /give messageId, sender, recipient or queueId/],
    ];
    for (const [path, status, detail] of gets) {
      const { status: got, json } = await call('GET', path);
      assert.equal(got, status, path);
      assert.match(String(json.detail), detail);
    }
    for (const [method, path] of [
      ['POST', '/api/v1/queues/suspend'],
      ['GET', '/api/v1/messages'],
      ['POST', '/api/v1/messages/remove'],
      ['GET', '/api/v1/messages/export?identity=X'],
      ['GET', '/api/v1/tracking?sender=a@example.net'],
      ['GET', '/api/v1/listeners'],
      ['POST', '/api/v1/listeners/inbound/suspend'],
    ] as const) {
      const refused = await call(method, path, method === 'POST' ? { identity: 'X' } : undefined, 'wrong-token-0123456789');
      assert.equal(refused.status, 401, `${method} ${path}`);
    }
    assert.equal(sluice.sluice.listeners[0]!.suspended, false, 'nothing was done without the token');

    const spec = (await call<{ openapi: string; paths: Record<string, unknown> }>('GET', '/api/v1/openapi.json')).json;
    assert.match(spec.openapi, /^3\./);
    const routes = ['/api/v1/queues', '/api/v1/queues/{action}', '/api/v1/messages', '/api/v1/messages/export', '/api/v1/messages/{action}', '/api/v1/tracking', '/api/v1/listeners', '/api/v1/listeners/{name}/{action}'];
    for (const route of routes) assert.ok(spec.paths[route], `${route} is documented`);
  });
});

describe('message actions (MG-3, QU-3)', () => {
  it('lists, shows, suspends, exports, removes with and without NDR, and resumes messages', async (t) => {
    const { sink, reports, sluice, base, call, list, statusOf, track } = await operated(t);
    await sink.stop();
    const kept = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('kept'));
    const bounced = await SmtpClient.submit(sluice.port, 'c@example.net', ['d@example.com', 'e@example.com'], body('bounced'));
    const dropped = await SmtpClient.submit(sluice.port, 'a@example.net', ['f@example.com'], body('dropped'));
    await waitUntil(async () => (await list()).length === 3 && (await list()).every((m) => m.Identity.startsWith('test/backend/')));
    await waitUntil(() => sluice.sluice.delivery.queues().find((q) => q.name === 'backend')?.status === 'Retry');

    const [shown] = (await call<Listed>('GET', `/api/v1/messages?identity=test/backend/${kept}`)).json.messages;
    assert.match(String(shown!.LastError), /ECONNREFUSED/, "a message in a queue in Retry shows the queue's error");
    assert.deepEqual({ ...shown, DateReceived: typeof shown!.DateReceived, ExpirationTime: typeof shown!.ExpirationTime, Size: typeof shown!.Size, LastError: 'checked' }, {
      Identity: `test/backend/${kept}`,
      Queue: 'test/backend',
      Status: 'Retry',
      DateReceived: 'string',
      ExpirationTime: 'string',
      FromAddress: 'a@example.net',
      InternetMessageId: '<kept@example.net>',
      LastError: 'checked',
      MessageSourceName: 'inbound',
      RetryCount: 0,
      SCL: null,
      Size: 'number',
      SourceIP: '127.0.0.1',
      Subject: 'kept',
      Recipients: [{ Address: 'b@example.com', Status: 'Ready', LastError: null }],
    });
    assert.deepEqual((await list(`?filter=${encodeURIComponent('{FromAddress -eq "C@EXAMPLE.NET" -and Queue -eq "test/backend"}')}`)).map((m) => m.Identity), [`test/backend/${bounced}`]);
    assert.deepEqual((await list(`?filter=${encodeURIComponent('Subject -like "*ept"')}`)).map((m) => m.Identity), [`test/backend/${kept}`]);
    const page = (await call<Listed>('GET', '/api/v1/messages?limit=2')).json;
    assert.equal(page.messages.length, 2);
    assert.equal(page.truncated, true);

    assert.deepEqual((await call('POST', '/api/v1/messages/suspend', { identity: kept })).json, { Suspended: 1, PendingSuspend: 0 });
    assert.equal(await statusOf(kept), 'Suspended');
    assert.equal((await call('POST', '/api/v1/messages/suspend', { identity: kept })).status, 409, 'already suspended');

    const exported = await fetch(`${base}/api/v1/messages/export?identity=test/backend/${kept}`, {
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
    });
    assert.equal(exported.headers.get('content-type'), 'message/rfc822');
    assert.equal(exported.headers.get('content-disposition'), `attachment; filename="${kept}.eml"`);
    const eml = await exported.text();
    assert.match(eml, new RegExp(`^X-Sender: <a@example\\.net>\\r\\nX-Receiver: <b@example\\.com>\\r\\nReceived: from client\\.test [^]*id ${kept}\\r\\n`));
    assert.ok(eml.endsWith(`\r\n${body('kept')}`), 'the message follows byte for byte');
    assert.equal(await statusOf(kept), 'Suspended', 'export leaves the message queued');

    assert.deepEqual((await call('POST', '/api/v1/messages/remove', { filter: 'FromAddress -eq "c@example.net"', ndr: true })).json, { Removed: 1, PendingRemove: 0 });
    const [ndr] = await reports.waitFor(1);
    assert.equal(ndr!.from, '');
    assert.deepEqual(ndr!.to, ['c@example.net']);
    const report = ndr!.body.toString();
    assert.match(report, /Final-Recipient: rfc822;\s*d@example\.com/);
    assert.match(report, /Final-Recipient: rfc822;\s*e@example\.com/);
    assert.match(report, /Action: failed/);
    assert.match(report, /Message removed by the administrator/);
    assert.deepEqual((await call('POST', '/api/v1/messages/remove', { identity: dropped })).json, { Removed: 1, PendingRemove: 0 });
    assert.equal(await sluice.sluice.store.getMessage(bounced), undefined);
    assert.equal(await sluice.sluice.store.getMessage(dropped), undefined);

    await sink.restart();
    await call('POST', '/api/v1/queues/retry', { identity: 'backend' });
    await settle(300);
    assert.equal(sink.messages.length, 0, 'a suspended message is not delivered');
    assert.deepEqual((await call('POST', '/api/v1/messages/resume', { filter: 'Status -eq "Suspended"' })).json, { Resumed: 1 });
    const [delivered] = await sink.waitFor(1);
    assert.deepEqual(delivered!.to, ['b@example.com']);
    await settle(200);
    assert.equal(reports.messages.length, 1, 'a removal without --ndr tells nobody');

    assert.deepEqual(await track(kept), ['received', 'routed', 'suspended', 'resumed', 'delivered']);
    assert.deepEqual(await track(bounced), ['received', 'routed', 'dsn', 'removed']);
    assert.deepEqual(await track(dropped), ['received', 'routed', 'removed']);
    const bySender = (await call<{ events: Json[] }>('GET', '/api/v1/tracking?sender=c@*&recipient=E@EXAMPLE.COM')).json.events;
    assert.deepEqual(bySender.map((e) => e.event), ['received', 'routed', 'dsn', 'removed']);
    const byMessageId = (await call<{ events: Json[] }>('GET', `/api/v1/tracking?messageId=${encodeURIComponent('kept@example.net')}`)).json.events;
    assert.equal(byMessageId.length, 5);
  });

  it('makes a message in delivery PendingSuspend or PendingRemove and applies it when the attempt ends', async (t) => {
    // recipients named later* are deferred; DATA for the others takes a while
    const { sink, reports, sluice, call, statusOf } = await operated(t, {
      dataDelayMs: 1500,
      rcptReply: (address) => (address.startsWith('later') ? '450 4.2.1 Try later' : undefined),
    });
    const active = async (id: string) => waitUntil(async () => (await statusOf(id)) === 'Active');

    const suspended = await SmtpClient.submit(sluice.port, 'a@example.net', ['now@example.com', 'later@example.com'], body('pending-suspend'));
    await active(suspended);
    assert.deepEqual((await call('POST', '/api/v1/messages/suspend', { identity: suspended })).json, { Suspended: 0, PendingSuspend: 1 });
    assert.equal(await statusOf(suspended), 'PendingSuspend');
    await waitUntil(async () => (await statusOf(suspended)) === 'Suspended');
    const [shown] = (await call<Listed>('GET', `/api/v1/messages?identity=${suspended}`)).json.messages;
    assert.deepEqual(shown!.Recipients.map((r) => [r.Address, r.Status]), [['now@example.com', 'Delivered'], ['later@example.com', 'Ready']]);
    assert.match(String(shown!.Recipients[1]!.LastError), /^450 4\.2\.1/);
    assert.deepEqual(sink.messages[0]!.to, ['now@example.com']);

    const removed = await SmtpClient.submit(sluice.port, 'g@example.net', ['now2@example.com', 'later2@example.com'], body('pending-remove'));
    await active(removed);
    assert.deepEqual((await call('POST', '/api/v1/messages/remove', { identity: removed, ndr: true })).json, { Removed: 0, PendingRemove: 1 });
    assert.equal(await statusOf(removed), 'PendingRemove');
    await waitUntil(async () => (await sluice.sluice.store.getMessage(removed)) === undefined);
    const [ndr] = await reports.waitFor(1);
    assert.deepEqual(ndr!.to, ['g@example.net']);
    assert.match(ndr!.body.toString(), /Final-Recipient: rfc822;\s*later2@example\.com/);
    assert.doesNotMatch(ndr!.body.toString(), /now2@example\.com/, 'the recipient delivered in that attempt stays delivered');
    assert.deepEqual(sink.messages.map((m) => m.to), [['now@example.com'], ['now2@example.com']]);

    // the suspended one is still there, and a suspended message is removed at once
    assert.deepEqual((await call('POST', '/api/v1/messages/remove', { identity: suspended })).json, { Removed: 1, PendingRemove: 0 });
    assert.equal(await sluice.sluice.store.getMessage(suspended), undefined);
  });
});

describe('listener actions (IN-7)', () => {
  it('refuses new connections with 421 4.3.2 while suspended, lets sessions in progress finish, and resumes', async (t) => {
    const { sluice, call } = await operated(t);
    const inProgress = await SmtpClient.open(sluice.port);
    assert.deepEqual((await call('POST', '/api/v1/listeners/inbound/suspend')).json, {
      Name: 'inbound',
      Address: `127.0.0.1:${sluice.port}`,
      Status: 'Suspended',
    });
    const refused = await SmtpClient.connect(sluice.port);
    const greeting = await refused.reply();
    assert.equal(greeting.code, 421);
    assert.match(greeting.text, /^421 4\.3\.2 /);
    await refused.closedByServer();
    assert.equal((await inProgress.send('a@example.net', ['b@example.com'], body('in-progress'))).code, 250);
    inProgress.close();
    assert.deepEqual((await call<Json[]>('GET', '/api/v1/listeners')).json.map((l) => l.Status), ['Suspended']);
    assert.equal((await call('POST', '/api/v1/listeners/inbound/resume')).json.Status, 'Active');
    (await SmtpClient.open(sluice.port)).close();
  });
});
