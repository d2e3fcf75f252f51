// SMTP conversations over TCP against a running Sluice: capabilities, DSN
// parameters, relay policy, limits, and the durable 250 (IN-1..IN-5).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyOf } from '../store/conformance.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const BODY = 'From: a@example.net\r\nTo: b@example.com\r\nSubject: Hello there\r\nMessage-ID: <abc@example.net>\r\n\r\nHi.\r\n.leading dot\r\n';

describe('intake: ESMTP capabilities (IN-1)', () => {
  it('offers PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, DSN, and no STARTTLS/AUTH without a certificate', async (t) => {
    const { port } = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxMessageSize: '10MB' }], auth: { users: [{ username: 'u', password: 'p' }] } });
    const client = await SmtpClient.connect(port);
    t.after(() => client.close());
    const greeting = await client.reply();
    assert.equal(greeting.code, 220);
    assert.match(greeting.text, /^220 sluice\.test ESMTP/);
    const ehlo = await client.command('EHLO client.test');
    const keywords = ehlo.lines.slice(1).map((l) => l.split(' ')[0]);
    for (const keyword of ['PIPELINING', 'SIZE', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN']) assert.ok(keywords.includes(keyword), keyword);
    assert.ok(ehlo.lines.includes(`SIZE ${10 * 1024 * 1024}`));
    assert.ok(!keywords.includes('STARTTLS'));
    assert.ok(!keywords.includes('AUTH'), 'AUTH must not be offered in the clear');
    const auth = await client.command('AUTH PLAIN AHUAcA==');
    assert.match(auth.text, /^50[02] /);
  });
});

describe('intake: accepting a message (IN-2)', () => {
  it('answers 250 with the queue id, and the message is in Submission byte-identical with our Received header', async (t) => {
    const { port, sluice } = await startTestSluice(t);
    const client = await SmtpClient.open(port, 'client.test');
    t.after(() => client.close());
    const reply = await client.send('a@example.net', ['b@example.com'], BODY);
    assert.equal(reply.code, 250);
    assert.match(reply.text, /^250 2\.6\.0 Ok: queued as [0-9A-Z]{16}$/);
    const id = queueIdOf(reply);
    const stored = await sluice.store.getMessage(id);
    assert.ok(stored);
    assert.equal(stored.mailFrom, 'a@example.net');
    assert.deepEqual(stored.recipients.map((r) => r.address), ['b@example.com']);
    assert.equal(stored.subject, 'Hello there');
    assert.equal(stored.internetMessageId, '<abc@example.net>');
    assert.equal(stored.sourceName, 'inbound');
    assert.equal(stored.sourceIp, '127.0.0.1');
    assert.equal(stored.heloName, 'client.test');
    assert.equal((await bodyOf(sluice.store, id)).toString('latin1'), BODY);
    const received = stored.traceHeader.toString();
    assert.match(received, /^Received: from client\.test \(.*\[127\.0\.0\.1\]\)\r\n\tby sluice\.test \(Sluice\) with ESMTP id [0-9A-Z]{16}\r\n\tfor <b@example\.com>;\r\n\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n$/);
    assert.ok(received.includes(`id ${id}`));
  });

  it('stores RFC 3461 parameters: RET, ENVID per message; NOTIFY, ORCPT per recipient', async (t) => {
    const { port, sluice } = await startTestSluice(t);
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    assert.equal((await client.command('MAIL FROM:<a@example.net> RET=HDRS ENVID=QQ314159 BODY=8BITMIME')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com')).code, 250);
    assert.equal((await client.command('RCPT TO:<c@example.com> NOTIFY=NEVER')).code, 250);
    assert.equal((await client.command('RCPT TO:<d@example.com>')).code, 250);
    const stored = await sluice.store.getMessage(queueIdOf(await client.data(BODY)));
    assert.equal(stored?.dsnRet, 'HDRS');
    assert.equal(stored?.dsnEnvid, 'QQ314159');
    assert.equal(stored?.bodyType, '8BITMIME');
    assert.deepEqual(stored?.recipients, [
      { address: 'b@example.com', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;b@example.com', status: 'Ready' },
      { address: 'c@example.com', notify: ['NEVER'], status: 'Ready' },
      { address: 'd@example.com', status: 'Ready' },
    ]);
    assert.doesNotMatch(stored!.traceHeader.toString(), /\tfor </, 'no "for" clause with several recipients');
  });

  it('accepts several messages on one connection and with PIPELINING', async (t) => {
    const { port, sluice } = await startTestSluice(t);
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    client.write('MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n');
    assert.deepEqual([(await client.reply()).code, (await client.reply()).code, (await client.reply()).code, (await client.reply()).code], [250, 250, 250, 354]);
    client.write('Subject: one\r\n\r\n1\r\n.\r\nMAIL FROM:<> SMTPUTF8\r\nRCPT TO:<ü@example.com>\r\nDATA\r\n');
    const first = await client.reply();
    assert.equal(first.code, 250);
    assert.deepEqual([(await client.reply()).code, (await client.reply()).code, (await client.reply()).code], [250, 250, 354]);
    client.write('Subject: two\r\n\r\n2\r\n.\r\n');
    const second = await client.reply();
    assert.equal(second.code, 250);
    const bounce = await sluice.store.getMessage(queueIdOf(second));
    assert.equal(bounce?.mailFrom, '');
    assert.equal(bounce?.smtpUtf8, true);
    assert.match(bounce!.traceHeader.toString(), /with UTF8SMTP id/);
    assert.equal((await sluice.store.stats()).messages, 2);
  });
});

describe('intake: relay policy (IN-4)', () => {
  it('takes accepted domains from anyone, refuses other domains with 550 5.7.1 unless the client network is allowed', async (t) => {
    // loopback is outside allowFrom here, so the test client is "anyone"
    const outside = await startTestSluice(t, { acceptedDomains: ['example.com', '*.example.org'], relay: { allowFrom: ['192.0.2.0/24'] } });
    const client = await SmtpClient.open(outside.port);
    t.after(() => client.close());
    assert.equal((await client.command('MAIL FROM:<x@elsewhere.test>')).code, 250);
    assert.equal((await client.command('RCPT TO:<user@example.com>')).code, 250);
    assert.equal((await client.command('RCPT TO:<user@EXAMPLE.COM>')).code, 250);
    assert.equal((await client.command('RCPT TO:<user@mx.sub.example.org>')).code, 250);
    const denied = await client.command('RCPT TO:<user@gmail.test>');
    assert.equal(denied.text, '550 5.7.1 Relaying denied');
    assert.equal((await client.command('RCPT TO:<user@example.org>')).code, 550, '*.example.org does not cover example.org itself');
    assert.equal((await client.command('RCPT TO:<user@notexample.com>')).code, 550);

    const inside = await startTestSluice(t, { relay: { allowFrom: ['127.0.0.0/8', '::1'] } });
    const allowed = await SmtpClient.open(inside.port);
    t.after(() => allowed.close());
    assert.equal((await allowed.command('MAIL FROM:<x@elsewhere.test>')).code, 250);
    assert.equal((await allowed.command('RCPT TO:<user@gmail.test>')).code, 250);
  });
});

describe('intake: limits (IN-5)', () => {
  it('refuses a declared SIZE over the limit at MAIL with 552 5.3.4', async (t) => {
    const { port } = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxMessageSize: '1KB' }] });
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    const reply = await client.command('MAIL FROM:<a@example.net> SIZE=1025');
    assert.equal(reply.code, 552);
    assert.match(reply.text, /^552 5\.3\.4 /);
    assert.equal((await client.command('MAIL FROM:<a@example.net> SIZE=1024')).code, 250);
  });

  it('refuses an undeclared oversized message after DATA with 552 5.3.4 and stores nothing', async (t) => {
    const { port, sluice } = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxMessageSize: '1KB' }] });
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    const reply = await client.send('a@example.net', ['b@example.com'], 'Subject: big\r\n\r\n' + 'x'.repeat(70) + '\r\n'.repeat(1) + ('y'.repeat(78) + '\r\n').repeat(20));
    assert.equal(reply.code, 552);
    assert.match(reply.text, /^552 5\.3\.4 /);
    assert.equal((await sluice.store.stats()).messages, 0);
    assert.equal((await client.send('a@example.net', ['b@example.com'], 'Subject: small\r\n\r\nok\r\n')).code, 250, 'the session goes on');
  });

  it('answers 452 4.5.3 past maxRecipients and keeps the recipients accepted so far', async (t) => {
    const { port, sluice } = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', maxRecipients: 3 }] });
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    for (const n of [1, 2, 3]) assert.equal((await client.command(`RCPT TO:<r${n}@example.com>`)).code, 250);
    const fourth = await client.command('RCPT TO:<r4@example.com>');
    assert.match(fourth.text, /^452 4\.5\.3 /);
    const stored = await sluice.store.getMessage(queueIdOf(await client.data('Subject: x\r\n\r\nx\r\n')));
    assert.equal(stored?.recipients.length, 3);
  });

  it('answers 501 to bad address syntax and 503 to commands out of order', async (t) => {
    const { port } = await startTestSluice(t);
    const client = await SmtpClient.open(port);
    t.after(() => client.close());
    assert.match((await client.command('RCPT TO:<b@example.com>')).text, /^503 /);
    assert.match((await client.command('MAIL FROM:<not an address>')).text, /^501 5\.1\.7 /);
    assert.match((await client.command('MAIL FROM:a@example.net')).text, /^501 /);
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.match((await client.command('RCPT TO:<no-domain>')).text, /^501 5\.1\.3 /);
    assert.match((await client.command('RCPT TO:<b@example.com> NOTIFY=SOMETIMES')).text, /^501 /);
    assert.match((await client.command('DATA')).text, /^503 /);
    assert.match((await client.command('MAIL FROM:<a@example.net> SIZE=abc')).text, /^50[13] /);
  });
});
