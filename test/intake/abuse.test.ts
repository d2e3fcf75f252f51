// Protocol abuse on the raw socket (IN-5): every case gets a clear error, the
// process keeps serving, and nothing half-received becomes visible.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const OK_BODY = 'Subject: fine\r\n\r\nfine\r\n';

/** The server still accepts a normal message on a new connection. */
async function assertStillServing(sluice: TestSluice): Promise<void> {
  const client = await SmtpClient.open(sluice.port);
  try {
    assert.equal((await client.send('a@example.net', ['b@example.com'], OK_BODY)).code, 250);
  } finally {
    client.close();
  }
}

/** Body chunks on disk, read straight from the database file. */
function chunksOnDisk(dataDir: string): number {
  const db = new Sqlite(join(dataDir, 'queue.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM body_chunks').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('intake: protocol abuse (IN-5)', () => {
  it('answers a command line longer than the limit with 500 5.5.2 and keeps the session (RFC 5321 4.5.3.1.4)', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    client.write(`MAIL FROM:<${'a'.repeat(100_000)}@example.net>\r\n`);
    assert.equal((await client.reply()).text, '500 5.5.2 Line too long');
    // pipelined around a long line, and a long line written one octet at a time: each command gets its own reply
    client.write(`NOOP\r\nRCPT TO:<${'b'.repeat(5000)}@example.com>\r\nNOOP\r\n`);
    assert.deepEqual([(await client.reply()).code, (await client.reply()).text, (await client.reply()).code], [250, '500 5.5.2 Line too long', 250]);
    for (const octet of `VRFY ${'c'.repeat(4200)}\r\n`) client.write(octet);
    assert.equal((await client.reply()).text, '500 5.5.2 Line too long');
    assert.equal((await client.send('a@example.net', ['b@example.com'], OK_BODY)).code, 250, 'the session goes on');
    await assertStillServing(sluice);
  });

  it('refuses a body with a bare LF with 554 5.6.0, and a smuggled "\\n.\\n" ends nothing', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    const smuggled = 'Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n';
    const reply = await client.send('a@example.net', ['b@example.com'], smuggled);
    assert.match(reply.text, /^554 5\.6\.0 .*bare LF/);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
    assert.equal((await client.send('a@example.net', ['b@example.com'], OK_BODY)).code, 250, 'the session goes on');
    assert.equal((await sluice.sluice.store.stats()).messages, 1);
  });

  it('refuses NUL octets and over-long lines with 554 5.6.0', async (t) => {
    const sluice = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxLineLength: 998 }] });
    const client = await SmtpClient.open(sluice.port);
    assert.match((await client.send('a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nnul\0here\r\n')).text, /^554 5\.6\.0 .*NUL/);
    assert.equal((await client.send('a@example.net', ['b@example.com'], `Subject: x\r\n\r\n${'y'.repeat(998)}\r\n`)).code, 250, '998 octets is the limit');
    // the over-long line spans many TCP chunks and the store's chunk size
    assert.match((await client.send('a@example.net', ['b@example.com'], `Subject: x\r\n\r\n${'y'.repeat(600_000)}\r\n`)).text, /^554 5\.6\.0 .*line/);
    assert.equal((await sluice.sluice.store.stats()).messages, 1);
  });

  it('answers garbage and binary noise with errors, then drops the client; the process lives on', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    assert.match((await client.command('HELLO WORLD')).text, /^500 /);
    for (let i = 0; i < 30 && !client.closed; i++) client.write(Buffer.concat([randomBytes(200), Buffer.from('\r\n')]));
    await client.closedByServer();
    await assertStillServing(sluice);
  });

  it('leaves nothing behind when the client disconnects in the middle of DATA', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    client.write(`Subject: cut\r\n\r\n${('z'.repeat(76) + '\r\n').repeat(30_000)}`); // ~2.3 MB: several stored chunks
    await waitFor(() => chunksOnDisk(sluice.dataDir) > 0); // the body is partly on disk, invisible
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
    client.close();
    await waitFor(() => chunksOnDisk(sluice.dataDir) === 0);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
    await assertStillServing(sluice);
  });

  it('limits connections per client IP and per listener with 421 4.7.0', async (t) => {
    const sluice = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxConnections: 3, maxConnectionsPerIp: 2 }] });
    const first = await SmtpClient.open(sluice.port);
    await SmtpClient.open(sluice.port);
    const third = await SmtpClient.connect(sluice.port);
    assert.match((await third.reply()).text, /^421 4\.7\.0 .*your address/);
    await third.closedByServer();
    first.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = await SmtpClient.open(sluice.port); // a slot is free again
    again.close();
  });

  it('closes a session idle past idleTimeout with 421', async (t) => {
    const sluice = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', idleTimeout: '1s' }] });
    const client = await SmtpClient.open(sluice.port);
    const reply = await client.reply(5000);
    assert.match(reply.text, /^421 /);
    await client.closedByServer();
  });

  it('closes a session older than sessionTimeout with 421 4.4.2 (driven by the clock)', async (t) => {
    const sluice = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', sessionTimeout: '10m' }] });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('NOOP')).code, 250);
    sluice.clock.advance(9 * 60_000);
    assert.equal((await client.command('NOOP')).code, 250);
    sluice.clock.advance(60_000);
    assert.match((await client.reply()).text, /^421 4\.4\.2 Session time limit/);
    await client.closedByServer();
  });
});
