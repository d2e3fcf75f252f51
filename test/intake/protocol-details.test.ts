// Details of the protocol that fuzzing found: bare CR (in the body and in a
// command), STARTTLS without a certificate, ASCII-only replies, <postmaster>,
// and what a client that goes away leaves in the log (IN-1, IN-5; RFC 5321).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyOf } from '../store/conformance.js';
import { selfSignedCert } from '../support/certs.js';
import { startSink } from '../support/sink.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

describe('intake: protocol details', () => {
  it('refuses a bare CR in the body with 554 5.6.0, across chunk boundaries too, and the session goes on', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    assert.match((await client.send('a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nbare CR\rinside\r\n')).text, /^554 5\.6\.0 .*bare CR/);
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    client.write('Subject: y\r\n\r\nends in CR\r');
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.write('and goes on\r\n.\r\n');
    assert.match((await client.reply()).text, /^554 5\.6\.0 .*bare CR/);
    assert.equal((await sluice.sluice.store.stats()).messages, 0);
    const accepted = await client.send('a@example.net', ['b@example.com'], 'Subject: z\r\n\r\nCRLF only\r\n');
    assert.equal(accepted.code, 250);
    assert.match((await bodyOf(sluice.sluice.store, queueIdOf(accepted))).toString('latin1'), /\r\n\r\nCRLF only\r\n$/);
  });

  it('refuses STARTTLS with 454 when the listener has no certificate, and the session goes on in the clear', async (t) => {
    const sluice = await startTestSluice(t, { auth: { users: [{ username: 'u', password: 'p' }] }, listeners: [{ name: 'in', listen: '127.0.0.1:0', allowInsecureAuth: false }] });
    const client = await SmtpClient.open(sluice.port);
    const reply = await client.command('STARTTLS');
    assert.equal(reply.text, '454 4.7.0 TLS not available');
    assert.equal(client.closed, false);
    assert.equal((await client.command('NOOP')).code, 250, 'the session stays in the clear and goes on');
  });

  it('answers in printable US-ASCII only, whatever the client sent (RFC 5321 4.2)', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    const replies = [
      await client.command('MAIL FROM:<a@example.net> 用=1 用=2'),
      await client.command('MAIL FROM:<ä@example.net> BODY=8BITMIMÉ'),
      await client.command('VRFY ünïcödé'),
      await client.command('XYZZY ✓'),
      await client.send('a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nbare\nLF\r\n'),
    ];
    for (const reply of replies) {
      assert.ok(reply.code >= 200 && reply.code < 600, reply.text);
      for (const line of reply.text.split('\n')) assert.match(line, PRINTABLE_ASCII, JSON.stringify(line));
    }
  });

  it('accepts RCPT TO:<postmaster> without a domain and delivers it to the postmaster address (RFC 5321 4.5.1)', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, {
      dsn: { postmaster: 'hostmaster@example.com' },
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
    });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('MAIL FROM:<someone@far.example>')).code, 250);
    assert.equal((await client.command('RCPT TO:<PostMaster>')).code, 250);
    assert.equal((await client.command('RCPT TO:<nobody>')).code, 501, 'other local parts still need a domain');
    assert.equal((await client.data('Subject: to the postmaster\r\n\r\nhello\r\n')).code, 250);
    const [delivered] = await sink.waitFor(1);
    assert.deepEqual(delivered!.to, ['hostmaster@example.com']);
  });

  it('refuses a command line with a bare CR inside with 500 5.5.2, and runs none of it', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    client.write('MAIL FROM:<a@example.net>\rRCPT TO:<b@example.com>\r\n');
    assert.equal((await client.reply()).text, '500 5.5.2 Bare CR in command line; lines must end with CRLF');
    assert.equal((await client.command('RCPT TO:<b@example.com>')).code, 503, 'no MAIL FROM was taken');
    assert.equal((await client.send('a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nx\r\n')).code, 250);
  });

  it('logs a client whose TLS handshake fails once, at info, without a stack', async (t) => {
    const sluice = await startTestSluice(t, { listeners: [{ name: 'in', listen: '127.0.0.1:0', tls: await selfSignedCert(t) }] });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('STARTTLS')).code, 220);
    client.write('this is not a TLS ClientHello\r\n'.repeat(4));
    await client.closedByServer();
    const line = await sluice.waitForLog((e) => e.msg === 'TLS handshake failed');
    assert.equal(line.level, 30);
    assert.equal(line.client, '127.0.0.1');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(sluice.logs.filter((e) => Number(e.level) >= 40 || JSON.stringify(e).includes('    at ')), []);
  });

  it('logs a client that disconnects in the middle of DATA once, at info, without a stack', async (t) => {
    const sluice = await startTestSluice(t);
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    client.write(`Subject: cut\r\n\r\n${'z'.repeat(70)}\r\n`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.close();
    const line = await sluice.waitForLog((e) => e.msg === 'client disconnected during DATA; nothing stored');
    assert.equal(line.level, 30);
    assert.equal(line.client, '127.0.0.1');
    assert.equal(line.listener, 'inbound');
    assert.ok(Number(line.bytes) > 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const noisy = sluice.logs.filter((e) => Number(e.level) >= 40 || JSON.stringify(e).includes('    at '));
    assert.deepEqual(noisy, []);
    assert.equal(sluice.logs.filter((e) => e.msg === 'client disconnected during DATA; nothing stored').length, 1);
  });
});
