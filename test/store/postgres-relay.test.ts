// Two Sluice processes (two node names) on one PostgreSQL queue store, end to
// end (ST-1, MG-2): mail accepted by either is delivered once, a queue
// suspended through one node's management stops delivery on both, and each
// node's message list shows the whole cluster's mail.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { apiJson, type Json } from '../support/api.js';
import { settle } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';
import { NO_PG, PG_URL, schemaFor } from './postgres-support.js';

it('delivers mail accepted by two nodes of one PostgreSQL store exactly once, with queue state shared', { skip: NO_PG, timeout: 60_000 }, async (t) => {
  const sink = await startSink(t);
  const schema = schemaFor(await tempDir(t));
  const config = (node: string) => ({
    node,
    storage: { backend: 'postgres', postgres: { url: PG_URL, schema } },
    routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
  });
  const [one, two] = await Promise.all([spawnSluice(t, config('n1')), spawnSluice(t, config('n2'))]);
  const send = (port: number, i: number) => SmtpClient.submit(port, 'a@example.net', [`r${i}@example.com`], `Subject: m${i}\r\n\r\nbody ${i}\r\n`);
  await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 === 0 ? one.port : two.port, i)));
  const delivered = await sink.waitFor(40);
  await settle(300);
  assert.equal(sink.messages.length, 40, 'no duplicates');
  assert.equal(new Set(delivered.map((m) => m.to[0])).size, 40);

  // suspended through n1: neither node delivers; n2 lists what n1 accepted
  await apiJson(one.managementPort, 'POST', '/api/v1/queues/suspend', { identity: 'n1/backend' });
  await send(one.port, 100);
  await send(two.port, 101);
  await settle(1000);
  assert.equal(sink.messages.length, 40, 'a queue suspended on one node is suspended on every node');
  const { messages } = await apiJson<{ messages: Json[] }>(two.managementPort, 'GET', `/api/v1/messages?filter=${encodeURIComponent('Queue -eq backend')}`);
  assert.deepEqual(messages.map((m) => m.Subject).sort(), ['m100', 'm101']);
  await apiJson(two.managementPort, 'POST', '/api/v1/queues/resume', { identity: 'n2/backend' });
  await sink.waitFor(42);
});

it('measures the storage limits on the shared queue: a node refuses with 452 what the cluster has no room for (IN-6)', { skip: NO_PG, timeout: 60_000 }, async (t) => {
  const sink = await startSink(t);
  await sink.stop();
  const schema = schemaFor(await tempDir(t));
  const config = (node: string) => ({
    node,
    storage: { backend: 'postgres', postgres: { url: PG_URL, schema }, limits: { maxQueuedMessages: 3, minFreeDisk: '1000TB' } },
    routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
  });
  const [one, two] = await Promise.all([spawnSluice(t, config('n1')), spawnSluice(t, config('n2'))]);
  for (let i = 0; i < 3; i++) await SmtpClient.submit(one.port, 'a@example.net', ['b@example.com'], `Subject: held ${i}\r\n\r\nx\r\n`);
  await settle(400); // past the limit check's cache
  const client = await SmtpClient.open(two.port);
  assert.equal((await client.command('MAIL FROM:<a@example.net>')).text, '452 4.3.1 Insufficient system storage, try again later', 'the other node counts the whole queue; the local disk is not asked');
  client.close();
});
