// Back-pressure (IN-6): past the storage limits new mail gets 452 4.3.1 at MAIL
// and RCPT, mail already accepted is kept and delivered, and acceptance resumes
// by itself once the store drains.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const BODY = 'Subject: pressure\r\n\r\nbody\r\n';

it('refuses new mail with 452 4.3.1 at the limit, keeps what it has, and accepts again after draining (IN-6)', async (t) => {
  const sink = await startSink(t);
  await sink.stop();
  const sluice = await startTestSluice(t, {
    routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
    storage: { limits: { maxQueuedMessages: 3 } },
  });
  const early = await SmtpClient.open(sluice.port);
  assert.equal((await early.command('MAIL FROM:<a@example.net>')).code, 250, 'a transaction begun below the limit');
  for (let i = 0; i < 3; i++) {
    sluice.clock.advance(1000);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], BODY);
  }
  sluice.clock.advance(1000);
  const client = await SmtpClient.open(sluice.port);
  assert.equal((await client.command('MAIL FROM:<a@example.net>')).text, '452 4.3.1 Insufficient system storage, try again later');
  assert.equal((await early.command('RCPT TO:<b@example.com>')).text, '452 4.3.1 Insufficient system storage, try again later');
  await sluice.waitForLog((e) => e.msg === 'storage limits reached: refusing new mail with 452 4.3.1');

  await sink.restart();
  sluice.clock.advance(60_000); // the queue's retry
  await sink.waitFor(3);
  while ((await sluice.sluice.store.stats()).messages > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  sluice.clock.advance(1000);
  assert.equal((await client.send('a@example.net', ['b@example.com'], BODY)).code, 250, 'accepting again');
  assert.equal(sink.messages.length >= 3, true, 'nothing accepted was dropped');
});
