// kill -9 while an operator's action waits for an attempt in progress (MG-3,
// ST-3): after a restart a PendingRemove is carried out (with its NDR) before
// delivery starts, so the message is never delivered instead; a
// PendingSuspend leaves the message suspended.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { waitUntil } from '../support/clock.js';
import { startSink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { TEST_TOKEN, spawnSluice, type SluiceProcess } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

async function call(sluice: SluiceProcess, method: 'GET' | 'POST', path: string, payload?: object): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${sluice.managementPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
    ...(payload ? { body: JSON.stringify(payload) } : {}),
  });
  return (await response.json()) as Record<string, unknown>;
}

const statusOf = async (sluice: SluiceProcess, id: string) =>
  ((await call(sluice, 'GET', `/api/v1/messages?identity=test/backend/${id}`)).messages as Array<{ Status: string }> | undefined)?.[0]?.Status;

it('finishes a PendingRemove and keeps a PendingSuspend after kill -9 in the middle of the attempt', { timeout: 60_000 }, async (t) => {
  const sinkOptions: SinkOptions = { dataDelayMs: 10_000 };
  const sink = await startSink(t, sinkOptions);
  const reports = await startSink(t);
  const dir = await tempDir(t);
  const route = (name: string, match: string, port: number) => ({ name, match: [match], smartHosts: [`127.0.0.1:${port}`], tls: 'none', maxConnections: 1 });
  const config = { routes: [route('backend', 'example.com', sink.port), route('senders', 'example.net', reports.port)] };

  const first = await spawnSluice(t, config, dir);
  const removed = await SmtpClient.submit(first.port, 'a@example.net', ['b@example.com'], 'Subject: removed\r\n\r\nbody\r\n');
  await waitUntil(async () => (await statusOf(first, removed)) === 'Active');
  assert.deepEqual(await call(first, 'POST', '/api/v1/messages/remove', { identity: removed, ndr: true }), { Removed: 0, PendingRemove: 1 });
  await first.kill9();

  sinkOptions.dataDelayMs = 10_000;
  const second = await spawnSluice(t, config, dir);
  const [ndr] = await reports.waitFor(1);
  assert.deepEqual(ndr!.to, ['a@example.net']);
  assert.match(ndr!.body.toString(), /Message removed by the administrator/);
  assert.equal((await call(second, 'GET', `/api/v1/messages?identity=${removed}`)).status, 404);

  const suspended = await SmtpClient.submit(second.port, 'a@example.net', ['c@example.com'], 'Subject: suspended\r\n\r\nbody\r\n');
  await waitUntil(async () => (await statusOf(second, suspended)) === 'Active');
  assert.deepEqual(await call(second, 'POST', '/api/v1/messages/suspend', { identity: suspended }), { Suspended: 0, PendingSuspend: 1 });
  await second.kill9();

  sinkOptions.dataDelayMs = 0;
  const third = await spawnSluice(t, config, dir);
  assert.equal(await statusOf(third, suspended), 'Suspended');
  const events = (await call(third, 'GET', `/api/v1/tracking?queueId=${removed}`)).events as Array<{ event: string }>;
  assert.deepEqual(events.map((e) => e.event), ['received', 'routed', 'dsn', 'removed']);
  // only the attempts cut short by the kills reached the sink: neither message was delivered afterwards
  assert.deepEqual(sink.messages.map((m) => m.to), [['b@example.com'], ['c@example.com']]);
});
