// A queue's Retry state (DL-3) survives a restart, and its messages show it
// (QU-3 status Retry): after a restart Sluice waits for the retry time it had
// set instead of hammering the next hop at once.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { apiJson, type Json } from '../support/api.js';
import { settle, waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice, type SluiceProcess } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

it('keeps a queue in Retry across a restart, with its retry time and last error, and shows its messages as Retry', { timeout: 60_000 }, async (t) => {
  const sink = await startSink(t);
  await sink.stop();
  const dir = await tempDir(t);
  const config = { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] };
  const first = await spawnSluice(t, config, dir);
  const id = await SmtpClient.submit(first.port, 'a@example.net', ['b@example.com'], 'Subject: waits\r\n\r\nbody\r\n');
  const backend = async (sluice: SluiceProcess) => (await apiJson<Json[]>(sluice.managementPort, 'GET', '/api/v1/queues?filter=NextHopDomain%20-eq%20backend'))[0];
  await waitUntil(async () => (await backend(first))?.Status === 'Retry');
  const before = (await backend(first))!;
  const { messages } = await apiJson<{ messages: Json[] }>(first.managementPort, 'GET', `/api/v1/messages?filter=${encodeURIComponent('Status -eq "Retry"')}`);
  assert.deepEqual(messages.map((m) => m.Identity), [`test/backend/${id}`]);
  assert.match(String(messages[0]!.LastError), /ECONNREFUSED/);
  assert.equal(await first.stop(), 0);

  await sink.restart();
  const second = await spawnSluice(t, config, dir);
  const after = (await backend(second))!;
  assert.deepEqual([after.Status, after.NextRetryTime, after.LastRetryTime, after.LastError], [before.Status, before.NextRetryTime, before.LastRetryTime, before.LastError]);
  await settle(500);
  assert.equal(sink.connections, 0, 'no attempt before the retry time');
  await apiJson(second.managementPort, 'POST', '/api/v1/queues/retry', { identity: 'backend' });
  await sink.waitFor(1);
  await waitUntil(async () => (await backend(second))?.Status !== 'Retry');
});
