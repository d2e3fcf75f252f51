// kill -9 while an operator's action waits for an attempt in progress (MG-3,
// ST-3): after a restart a PendingRemove is carried out (with its NDR) before
// delivery starts, so the message is never delivered instead; a
// PendingSuspend leaves the message suspended.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { apiJson } from '../support/api.js';
import { waitUntil } from '../support/clock.js';
import { startSink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice, type SluiceProcess } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const statusOf = async (sluice: SluiceProcess, id: string) =>
  ((await apiJson(sluice.managementPort, 'GET', `/api/v1/messages?identity=test/backend/${id}`)).messages as Array<{ Status: string }> | undefined)?.[0]?.Status;

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
  assert.deepEqual(await apiJson(first.managementPort, 'POST', '/api/v1/messages/remove', { identity: removed, ndr: true }), { Removed: 0, PendingRemove: 1 });
  await first.kill9();

  sinkOptions.dataDelayMs = 10_000;
  const second = await spawnSluice(t, config, dir);
  const [ndr] = await reports.waitFor(1);
  assert.deepEqual(ndr!.to, ['a@example.net']);
  assert.match(ndr!.body.toString(), /Message removed by the administrator/);
  assert.equal((await apiJson(second.managementPort, 'GET', `/api/v1/messages?identity=${removed}`)).status, 404);

  const suspended = await SmtpClient.submit(second.port, 'a@example.net', ['c@example.com'], 'Subject: suspended\r\n\r\nbody\r\n');
  await waitUntil(async () => (await statusOf(second, suspended)) === 'Active');
  assert.deepEqual(await apiJson(second.managementPort, 'POST', '/api/v1/messages/suspend', { identity: suspended }), { Suspended: 0, PendingSuspend: 1 });
  await second.kill9();

  sinkOptions.dataDelayMs = 0;
  // what reached the sink before the kills: at most the two attempts they cut short
  const cutShort = sink.messages.length;
  const third = await spawnSluice(t, config, dir);
  assert.equal(await statusOf(third, suspended), 'Suspended');
  const events = (await apiJson(third.managementPort, 'GET', `/api/v1/tracking?queueId=${removed}`)).events as Array<{ event: string }>;
  assert.deepEqual(events.map((e) => e.event), ['received', 'routed', 'dsn', 'removed']);
  // neither message is delivered after the restart: the removed one is gone, the suspended one waits
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(sink.messages.length, cutShort, 'nothing delivered after the last restart');
  const seen = sink.messages.map((m) => m.to.join());
  assert.ok(seen.every((to) => to === 'b@example.com' || to === 'c@example.com') && new Set(seen).size === seen.length, JSON.stringify(seen));
});
