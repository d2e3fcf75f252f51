// SIGTERM while a next hop hangs in the middle of an attempt (ST-5, DL-9): the
// stop ends within its grace period, the message in flight is handed back
// untouched (no crash counted, not Active), and the next start delivers it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { waitUntil } from '../support/clock.js';
import { startSink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

it('stops promptly on SIGTERM with an attempt hung on the next hop, and delivers that message after the restart', { timeout: 60_000 }, async (t) => {
  const options: SinkOptions = { holdRcpt: () => true };
  const sink = await startSink(t, options);
  const dir = await tempDir(t);
  const config = { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] };
  const first = await spawnSluice(t, config, dir);
  await SmtpClient.submit(first.port, 'a@example.net', ['b@example.com'], 'Subject: hung\r\n\r\nbody\r\n');
  await waitUntil(() => sink.held === 1);
  const started = Date.now();
  assert.equal(await first.stop(), 0);
  const seconds = (Date.now() - started) / 1000;
  assert.ok(seconds < 12, `SIGTERM took ${seconds} s`);
  const db = new Sqlite(join(first.dataDir, 'queue.db'), { readonly: true });
  const rows = db.prepare('SELECT items.state, messages.crash_count FROM items JOIN messages ON messages.seq = items.message_seq').all();
  db.close();
  assert.deepEqual(rows, [{ state: 'ready', crash_count: 0 }], 'handed back as it was, not left claimed');

  options.holdRcpt = () => false;
  const second = await spawnSluice(t, config, dir);
  await sink.waitFor(1, 20_000);
  assert.equal(await second.stop(), 0);
  assert.ok(first.logLines.every((line) => !line.includes('"level":50')), 'no error in the log of the first run');
});
