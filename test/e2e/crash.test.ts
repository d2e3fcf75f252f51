// kill -9 under concurrent load (IN-2, ST-3): after every crash, each message
// that got a 250 is in the store, byte-identical; half-received bodies are gone.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { systemClock } from '../../src/clock.js';
import { openSqliteStore } from '../../src/store/sqlite/store.js';
import { bodyOf } from '../store/conformance.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const CYCLES = 3;
const SESSIONS = 8;

/** A valid body of about `bytes` octets: header, then 76-character lines. */
function randomBody(bytes: number): Buffer {
  const lines = Math.max(1, Math.ceil(bytes / 78));
  const text = randomBytes(lines * 57).toString('base64').match(/.{1,76}/g)!.join('\r\n');
  return Buffer.from(`Subject: crash test\r\nMessage-ID: <${randomBytes(8).toString('hex')}@test>\r\n\r\n${text}\r\n`);
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Sends messages until the connection dies; records every one that got a 250. */
async function sendUntilKilled(port: number, acknowledged: Map<string, string>): Promise<void> {
  let client: SmtpClient;
  try {
    client = await SmtpClient.open(port);
  } catch {
    return;
  }
  for (let i = 0; ; i++) {
    // mostly small messages, some that span several stored chunks
    const body = randomBody(i % 5 === 0 ? 700_000 : 2000 + (i % 7) * 3000);
    try {
      const reply = await client.send('load@example.net', ['rcpt@example.com'], body);
      if (reply.code !== 250) throw new Error(`unexpected reply ${reply.text}`);
      acknowledged.set(queueIdOf(reply), sha(body));
    } catch (error) {
      if (client.closed) return;
      throw error;
    }
  }
}

it('keeps every acknowledged message across repeated kill -9 under load', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t);
  const acknowledged = new Map<string, string>();
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const sluice = await spawnSluice(t, {}, dir);
    const senders = Array.from({ length: SESSIONS }, () => sendUntilKilled(sluice.port, acknowledged));
    const before = acknowledged.size;
    // kill under load: once this cycle's first messages are in (however busy the machine), then a little later
    const deadline = Date.now() + 30_000;
    while (acknowledged.size === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
    await sluice.kill9();
    await Promise.all(senders);
    assert.ok(acknowledged.size > before, `cycle ${cycle}: some messages were acknowledged before the kill`);

    // what a restart finds: open the store as Sluice does (runs recovery)
    const store = await openSqliteStore({ dataDir: sluice.dataDir, clock: systemClock, poisonThreshold: 2, owner: 'test/restart', leaseTimeout: 30_000 });
    try {
      for (const [id, digest] of acknowledged) {
        const stored = await store.getMessage(id);
        assert.ok(stored, `cycle ${cycle}: acknowledged message ${id} is missing`);
        const body = await bodyOf(store, id);
        assert.equal(body.length, stored.size);
        assert.equal(sha(body), digest, `cycle ${cycle}: message ${id} differs from what was sent`);
      }
    } finally {
      await store.close();
    }
    const db = new Sqlite(join(sluice.dataDir, 'queue.db'), { readonly: true });
    const orphans = db.prepare('SELECT count(*) AS n FROM body_chunks WHERE message_id NOT IN (SELECT id FROM messages)').get() as { n: number };
    db.close();
    assert.equal(orphans.n, 0, `cycle ${cycle}: half-received bodies were swept`);
  }
});
