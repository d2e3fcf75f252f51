// A real full disk under the store (IN-6, ST-2): new mail gets 452 4.3.1
// before the disk is full, a message that meets ENOSPC in the middle of DATA
// gets 451 and leaves nothing visible, and once space returns (on the disk,
// or inside the store once its mail is delivered) intake and delivery go on by
// themselves, with nothing acknowledged lost.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { apiJson } from '../support/api.js';
import { waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { mountSmallDisk } from '../support/small-disk.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';

const MB = 1024 * 1024;

const queuedCount = async (managementPort: number) => (await apiJson<{ messages: unknown[] }>(managementPort, 'GET', '/api/v1/messages?limit=100000')).messages.length;

it('refuses with 452 before the disk is full, answers 451 to a message cut by ENOSPC, and resumes by itself when space returns', { timeout: 180_000 }, async (t) => {
  const disk = await mountSmallDisk(t, 64);
  if (!disk) return t.skip('cannot mount a small filesystem here (needs root: mount -o loop or tmpfs)');
  const sink = await startSink(t);
  await sink.stop();
  const sluice = await spawnSluice(
    t,
    {
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
      storage: { limits: { minFreeDisk: '8MB' } },
      retry: { glitchRetryInterval: '1s', transientFailureRetryInterval: '1s', outboundConnectionFailureRetryInterval: '1s' },
    },
    disk.path,
  );

  // 1. the disk fills up while a message is coming in: 451, and nothing of it is visible
  const cut = await SmtpClient.open(sluice.port);
  assert.equal((await cut.command('MAIL FROM:<a@example.net>')).code, 250);
  assert.equal((await cut.command('RCPT TO:<b@example.com>')).code, 250);
  assert.equal((await cut.command('DATA')).code, 354);
  const line = `${'x'.repeat(98)}\r\n`;
  cut.write(`Subject: cut by ENOSPC\r\n\r\n${line.repeat(5000)}`);
  const freeAgain = await disk.fill(64 * 1024);
  for (let i = 0; i < 40 && !cut.closed; i++) {
    cut.write(line.repeat(5000)); // 500 KB a time, 20 MB in all: more than the disk has left
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  cut.write('.\r\n');
  const refused = await cut.reply(30_000);
  assert.match(refused.text, /^451 4\.3\.0 /, 'a message the store could not keep is refused with a temporary error');
  await freeAgain();
  assert.equal(await queuedCount(sluice.managementPort), 0, 'nothing half-stored is visible');

  // 2. mail fills what is left: 452 4.3.1 at MAIL or RCPT before the disk is full, never a 451
  const freeLater = await disk.fill(24 * MB);
  const acknowledged: string[] = [];
  const refusals: string[] = [];
  const sender = async (c: number) => {
    const client = await SmtpClient.open(sluice.port);
    for (let i = 0; i < 400 && refusals.length < 6; i++) {
      const subject = `fill ${c}-${i}`;
      const reply = await client.send('a@example.net', ['b@example.com'], `Subject: ${subject}\r\n\r\n${line.repeat(400)}`);
      if (reply.code === 250) acknowledged.push(subject);
      else refusals.push(reply.text);
      if (reply.code !== 250) await client.command('RSET');
    }
    client.close();
  };
  await Promise.all([0, 1, 2].map(sender));
  assert.ok(acknowledged.length > 10, `some mail fits (${acknowledged.length})`);
  assert.ok(refusals.length > 0, 'the sending stopped at a refusal');
  for (const text of refusals) assert.match(text, /^452 4\.3\.1 /);
  assert.ok((await disk.freeBytes()) > 0, 'the disk never became full');
  assert.equal(sluice.child.exitCode, null, 'Sluice runs on');

  // 3. the next hop comes back: all acknowledged mail goes out, and the space it took in the store is taken for
  //    new mail again, though the database file does not shrink and the disk stays as full as it was
  await sink.restart();
  await waitUntil(() => acknowledged.every((subject) => sink.messages.some((m) => m.body.includes(`Subject: ${subject}\r\n`))), 90_000);
  assert.equal(sink.messages.filter((m) => m.body.includes('Subject: cut by ENOSPC')).length, 0, 'what was refused is never delivered');
  const sendOne = async () => {
    const client = await SmtpClient.open(sluice.port);
    const reply = await client.send('a@example.net', ['b@example.com'], 'Subject: after\r\n\r\nx\r\n');
    client.close();
    return reply.code;
  };
  await waitUntil(async () => (await sendOne()) === 250, 20_000);
  assert.ok((await disk.freeBytes()) < 8 * MB, 'the disk itself still has less free than minFreeDisk');

  // 4. space returns on the disk too: still taking mail
  await freeLater();
  assert.equal(await sendOne(), 250);
});
