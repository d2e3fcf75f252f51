// Bodies are streamed (IN-3): ten parallel 30 MB messages grow the server's
// resident memory by less than 100 MB, and arrive intact.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { it } from 'node:test';
import { systemClock } from '../../src/clock.js';
import { openSqliteStore } from '../../src/store/sqlite/store.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';

const MESSAGE_BYTES = 30 * 1024 * 1024;
const SESSIONS = 10;

/** The body as pieces of ~64 KB, never whole in memory; each session's lines differ. */
function* bodyPieces(session: number): Generator<Buffer> {
  yield Buffer.from(`Subject: big ${session}\r\n\r\n`);
  const line = `${String(session).padStart(2, '0')}${'abcdefghijklmnopqrstuvwxyz'.repeat(3).slice(0, 74)}\r\n`;
  const piece = Buffer.from(line.repeat(Math.floor(65_536 / line.length)));
  for (let sent = 0; sent < MESSAGE_BYTES; sent += piece.length) yield piece;
}

function digestOf(session: number): { sha: string; size: number } {
  const hash = createHash('sha256');
  let size = 0;
  for (const piece of bodyPieces(session)) {
    hash.update(piece);
    size += piece.length;
  }
  return { sha: hash.digest('hex'), size };
}

it('keeps memory bounded with ten parallel 30 MB messages (IN-3)', { timeout: 240_000 }, async (t) => {
  const sluice = await spawnSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxMessageSize: '40MB' }] });
  const warmup = await SmtpClient.open(sluice.port);
  assert.equal((await warmup.send('a@example.net', ['b@example.com'], 'Subject: warm\r\n\r\nup\r\n')).code, 250);
  warmup.close();
  const baseline = await sluice.memory();

  const ids = await Promise.all(
    Array.from({ length: SESSIONS }, async (_, session) => {
      const client = await SmtpClient.open(sluice.port);
      assert.equal((await client.command('MAIL FROM:<big@example.net>')).code, 250);
      assert.equal((await client.command('RCPT TO:<b@example.com>')).code, 250);
      assert.equal((await client.command('DATA')).code, 354);
      await client.writeAll(bodyPieces(session));
      client.write('.\r\n');
      const reply = await client.reply(120_000);
      assert.equal(reply.code, 250, reply.text);
      client.close();
      return queueIdOf(reply);
    }),
  );
  const after = await sluice.memory();
  const growthMb = (after.peakKb - baseline.rssKb) / 1024;
  t.diagnostic(`RSS baseline ${(baseline.rssKb / 1024).toFixed(1)} MB, peak ${(after.peakKb / 1024).toFixed(1)} MB, growth ${growthMb.toFixed(1)} MB`);
  assert.ok(growthMb < 100, `RSS grew by ${growthMb.toFixed(1)} MB`);
  assert.equal(await sluice.stop(), 0);

  const store = await openSqliteStore({ dataDir: sluice.dataDir, clock: systemClock, poisonThreshold: 2, owner: 'test/restart', leaseTimeout: 30_000 });
  t.after(() => store.close());
  for (const [session, id] of ids.entries()) {
    const hash = createHash('sha256');
    for await (const part of store.readBody(id)) hash.update(part);
    const expected = digestOf(session);
    assert.equal((await store.getMessage(id))?.size, expected.size);
    assert.equal(hash.digest('hex'), expected.sha, `message of session ${session} is intact`);
  }
});
