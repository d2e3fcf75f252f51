// The Poison queue (QU-6) with real crashes: a message whose delivery attempt
// is cut short by kill -9 each time ends, at poison.crashThreshold, suspended
// in <node>/Poison with the reason; the rest of its queue flows; it never
// leaves by itself, and an operator's resume sends it through routing again.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { apiJson, type Json } from '../support/api.js';
import { settle, waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

it('moves a message that was in hand at two crashes to Poison, keeps the queue flowing, and resumes it on request', { timeout: 90_000 }, async (t) => {
  let holding = true;
  // the attempt on poison@ hangs at RCPT, so the process is killed in the middle of it
  const sink = await startSink(t, { holdRcpt: (address) => holding && address === 'poison@example.com' });
  await sink.stop();
  const dir = await tempDir(t);
  const config = { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none', maxConnections: 1 }] };

  const first = await spawnSluice(t, config, dir);
  const poison = await SmtpClient.submit(first.port, 'a@example.net', ['poison@example.com'], 'Subject: poison\r\n\r\nbody\r\n');
  for (let i = 0; i < 3; i++) await SmtpClient.submit(first.port, 'a@example.net', [`ok${i}@example.com`], `Subject: ok ${i}\r\n\r\nbody\r\n`);
  await waitUntil(async () => (await apiJson<Json[]>(first.managementPort, 'GET', '/api/v1/queues?filter=Status%20-eq%20Retry')).length === 1);
  await sink.restart();
  await apiJson(first.managementPort, 'POST', '/api/v1/queues/retry', { identity: 'backend' });
  await waitUntil(() => sink.held === 1);
  await first.kill9();

  // the first crash only counts; at start the message is delivered again, first in line
  const second = await spawnSluice(t, config, dir);
  await waitUntil(() => sink.held === 2);
  assert.equal(sink.messages.length, 0, 'the rest of the queue waits behind the attempt in hand');
  await second.kill9();

  const third = await spawnSluice(t, config, dir);
  const delivered = await sink.waitFor(3);
  assert.deepEqual(delivered.map((m) => m.to[0]).sort(), ['ok0@example.com', 'ok1@example.com', 'ok2@example.com']);
  const { messages } = await apiJson<{ messages: Json[] }>(third.managementPort, 'GET', `/api/v1/messages?filter=${encodeURIComponent('Queue -eq Poison')}`);
  assert.equal(messages.length, 1);
  assert.equal(messages[0]!.Identity, `test/Poison/${poison}`);
  assert.equal(messages[0]!.Status, 'Suspended');
  assert.match(String(messages[0]!.LastError), /^Sluice stopped 2 times while this message was being delivered/);
  const queues = await apiJson<Json[]>(third.managementPort, 'GET', '/api/v1/queues?filter=NextHopDomain%20-eq%20Poison');
  assert.deepEqual(queues.map((q) => [q.Identity, q.MessageCount]), [['test/Poison', 1]]);
  assert.ok(third.logLines.some((line) => line.includes('messages in the Poison queue')), 'the start says so');
  const refused = await apiJson<Json>(third.managementPort, 'POST', '/api/v1/queues/retry', { identity: 'test/Poison', resubmit: true });
  assert.equal(refused.status, 409, 'the Poison queue is not resubmitted as a whole');

  await settle(500);
  assert.equal(sink.held, 2, 'a poison message never leaves by itself');
  holding = false;
  assert.deepEqual(await apiJson(third.managementPort, 'POST', '/api/v1/messages/resume', { identity: poison }), { Resumed: 1 });
  const [, , , resumed] = await sink.waitFor(4);
  assert.deepEqual(resumed!.to, ['poison@example.com']);
  assert.deepEqual(await apiJson<Json[]>(third.managementPort, 'GET', '/api/v1/queues?filter=NextHopDomain%20-eq%20Poison'), [], 'an empty Poison queue is not listed');
});
