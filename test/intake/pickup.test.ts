// Pickup and replay directories with real files (IN-8): the envelope from the
// headers (pickup) or from X-Sender / X-Receiver (replay), export → replay
// round trip, files that cannot be submitted moved to badmail with a reason, a
// half-written file left alone, and files kept while the store is full.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { settle, waitUntil } from '../support/clock.js';
import { deadPort, startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { TEST_TOKEN, startTestSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

async function withDirectories(t: TestContext, nextHop: number, extra: Record<string, unknown> = {}) {
  const base = await tempDir(t);
  const dirs = { dir: join(base, 'pickup'), replayDir: join(base, 'replay'), badmailDir: join(base, 'badmail') };
  const sluice = await startTestSluice(t, {
    routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${nextHop}`], tls: 'none' }],
    pickup: dirs,
    ...extra,
  });
  /** Puts a file in place the way writers must: under another name, then renamed. */
  const drop = async (dir: string, name: string, content: string | Buffer) => {
    await writeFile(join(dir, `${name}.part`), content);
    await rename(join(dir, `${name}.part`), join(dir, name));
  };
  return { sluice, ...dirs, drop };
}

describe('pickup directory (IN-8)', () => {
  it('submits a dropped .eml with the envelope from its headers, without Bcc, with CRLF line ends, and deletes it', async (t) => {
    const sink = await startSink(t);
    const { sluice, dir, drop } = await withDirectories(t, sink.port);
    const file = [
      'From: "Ann" <ann@example.net>',
      'To: bob@example.com, "Cy" <cy@example.com>',
      'Cc: dee@example.com',
      'Bcc: eve@example.com',
      'Message-ID: <picked@example.net>',
      'Subject: picked up',
      '',
      'Hello from a file.',
      '',
    ].join('\n');
    await drop(dir, 'one.eml', file);
    const [sunk] = await sink.waitFor(1);
    assert.equal(sunk!.from, 'ann@example.net');
    assert.deepEqual([...sunk!.to].sort(), ['bob@example.com', 'cy@example.com', 'dee@example.com', 'eve@example.com']);
    const text = sunk!.body.toString();
    assert.match(text, /^Received: by sluice\.test \(Sluice\) id \w+;\r\n/);
    assert.ok(text.endsWith('From: "Ann" <ann@example.net>\r\nTo: bob@example.com, "Cy" <cy@example.com>\r\nCc: dee@example.com\r\nMessage-ID: <picked@example.net>\r\nSubject: picked up\r\n\r\nHello from a file.\r\n'));
    assert.doesNotMatch(text, /Bcc|eve@/);
    await waitUntil(async () => (await readdir(dir)).length === 0);
    const received = sluice.logs.find((e) => e.msg === 'received' && e.source === 'pickup');
    assert.equal(received?.file, 'one.eml');
    assert.equal(received?.messageId, '<picked@example.net>');
  });

  it('leaves a half-written file alone and moves files it cannot submit to badmail with the reason', async (t) => {
    const sink = await startSink(t);
    const { dir, badmailDir, drop } = await withDirectories(t, sink.port);
    await writeFile(join(dir, 'half.eml.part'), 'From: ann@example.net\nTo: bob@example.com\n');
    await drop(dir, 'nobody.eml', 'From: ann@example.net\nSubject: no one\n\nbody\n');
    await drop(dir, 'garbage.eml', 'this is not a header\n\nbody\n');
    await waitUntil(async () => (await readdir(badmailDir)).length === 4);
    const reasons = new Map<string, string>();
    for (const name of (await readdir(badmailDir)).filter((n) => n.endsWith('.reason'))) {
      reasons.set(name.replace(/^\d+-/, ''), (await readFile(join(badmailDir, name), 'utf8')).trim());
    }
    assert.deepEqual(Object.fromEntries(reasons), {
      'garbage.eml.reason': 'not a header field: "this is not a header"',
      'nobody.eml.reason': 'no recipients: the file has no To, Cc or Bcc address',
    });
    assert.ok(existsSync(join(dir, 'half.eml.part')), 'a file not yet renamed to .eml is not read');
    await settle(200);
    assert.equal(sink.messages.length, 0);
    await rename(join(dir, 'half.eml.part'), join(dir, 'half.eml'));
    await waitUntil(() => existsSync(join(badmailDir)) && !existsSync(join(dir, 'half.eml')));
  });

  it('keeps files in the directory while the store is full, and takes them when it is not', async (t) => {
    const sink = await startSink(t);
    await sink.stop();
    const { sluice, dir, drop } = await withDirectories(t, sink.port, { storage: { limits: { maxQueuedMessages: 1 } } });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], 'Subject: fills\r\n\r\nx\r\n');
    sluice.clock.advance(1000);
    await drop(dir, 'waits.eml', 'From: ann@example.net\nTo: bob@example.com\n\nwaits\n');
    await settle(300);
    assert.deepEqual(await readdir(dir), ['waits.eml'], 'not taken, not deleted, not bad');
    await sink.restart();
    sluice.clock.advance(60_000); // the queue's retry drains the store
    await sink.waitFor(1);
    await waitUntil(async () => (await sluice.sluice.store.stats()).messages === 0);
    sluice.clock.advance(1000);
    await sluice.sluice.pickups[0]!.drained();
    await waitUntil(async () => (await readdir(dir)).length === 0, 10_000);
    await sink.waitFor(2);
  });
});

describe('replay directory (IN-8)', () => {
  it('round-trips export → replay with the envelope and DSN parameters, and refuses a file without X-Sender', async (t) => {
    const dead = await deadPort();
    const { sluice, replayDir, badmailDir, drop } = await withDirectories(t, dead);
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('MAIL FROM:<a@example.net> RET=HDRS ENVID=env7')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.com')).code, 250);
    assert.equal((await client.command('RCPT TO:<c@example.com>')).code, 250);
    const original = 'Subject: replay me\r\n\r\nSame bytes.\r\n';
    const id = /queued as (\w+)/.exec((await client.data(original)).text)![1]!;
    client.close();
    await waitUntil(async () => (await sluice.sluice.store.listMessages([{ column: 'queue', operator: '-eq', value: 'backend', text: true }], 10)).length === 1);

    const exported = await (
      await fetch(`http://127.0.0.1:${sluice.sluice.management.address.port}/api/v1/messages/export?identity=${id}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } })
    ).text();
    await drop(replayDir, 'again.eml', exported);
    await waitUntil(async () => (await readdir(replayDir)).length === 0);
    const replayed = sluice.logs.find((e) => e.msg === 'received' && e.source === 'replay');
    const copy = (await sluice.sluice.store.getMessage(String(replayed!.queueId)))!;
    assert.equal(copy.mailFrom, 'a@example.net');
    assert.equal(copy.dsnRet, 'HDRS');
    assert.equal(copy.dsnEnvid, 'env7');
    assert.deepEqual(copy.recipients.map((r) => [r.address, r.notify, r.orcpt]), [
      ['b@example.com', ['FAILURE', 'DELAY'], 'rfc822;b@example.com'],
      ['c@example.com', undefined, undefined],
    ]);
    let body = '';
    for await (const chunk of sluice.sluice.store.readBody(copy.id)) body += chunk.toString();
    assert.match(body, new RegExp(`^Received: from client\\.test [^]*id ${id};\\r\\n`), 'the first trace header travels with it');
    assert.ok(body.endsWith(original), 'the message bytes are unchanged');
    assert.doesNotMatch(body, /X-Sender|X-Receiver/);

    await drop(replayDir, 'bare.eml', 'From: a@example.net\r\nTo: b@example.com\r\n\r\nno envelope\r\n');
    await waitUntil(async () => (await readdir(badmailDir)).some((n) => n.endsWith('bare.eml.reason')));
    const reason = (await readdir(badmailDir)).find((n) => n.endsWith('bare.eml.reason'))!;
    assert.equal((await readFile(join(badmailDir, reason), 'utf8')).trim(), 'the file must start with one X-Sender field (found 0)');
  });
});
