// STARTTLS and AUTH (IN-1): TLS is offered when a certificate is configured,
// AUTH only inside TLS (unless a listener allows it), and an authenticated user
// may relay (IN-4).
import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { selfSignedCert } from '../support/certs.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const plain = (user: string, password: string) => Buffer.from(`\0${user}\0${password}`).toString('base64');

function scryptEntry(password: string): string {
  const salt = randomBytes(16);
  return `scrypt$${salt.toString('base64')}$${scryptSync(password, salt, 64).toString('base64')}`;
}

describe('intake: STARTTLS and AUTH (IN-1, IN-4)', () => {
  it('offers STARTTLS, offers AUTH only after it, and lets an authenticated user relay', async (t) => {
    const tls = await selfSignedCert(t);
    const { port, sluice } = await startTestSluice(t, {
      listeners: [{ name: 'in', listen: '127.0.0.1:0', tls }],
      relay: { allowFrom: ['192.0.2.0/24'] }, // loopback may not relay by network
      auth: { users: [{ username: 'alice', password: 'wonderland' }, { username: 'bob', password: scryptEntry('builder') }] },
    });
    const client = await SmtpClient.connect(port);
    await client.reply();
    const before = await client.command('EHLO client.test');
    assert.ok(before.lines.includes('STARTTLS'));
    assert.ok(!before.lines.some((l) => l.startsWith('AUTH')), 'no AUTH in the clear');
    assert.match((await client.command(`AUTH PLAIN ${plain('alice', 'wonderland')}`)).text, /^5\d\d /);

    const after = await client.startTls();
    assert.ok(!after.lines.includes('STARTTLS'));
    assert.ok(after.lines.includes('AUTH PLAIN LOGIN'));
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await client.command('RCPT TO:<someone@elsewhere.test>')).text, '550 5.7.1 Relaying denied', 'not yet authenticated');
    assert.equal((await client.command('RSET')).code, 250);
    assert.match((await client.command(`AUTH PLAIN ${plain('alice', 'wrong')}`)).text, /^535 5\.7\.8 /);
    assert.match((await client.command(`AUTH PLAIN ${plain('alice', 'wonderland')}`)).text, /^235 /);
    const reply = await client.send('a@example.net', ['someone@elsewhere.test'], 'Subject: tls\r\n\r\nover tls\r\n');
    assert.equal(reply.code, 250);
    const stored = await sluice.store.getMessage(queueIdOf(reply));
    assert.equal(stored?.authUser, 'alice');
    assert.match(stored!.traceHeader.toString(), /with ESMTPSA id/);
    client.close();

    const second = await SmtpClient.open(port);
    await second.startTls();
    assert.match((await second.command(`AUTH PLAIN ${plain('bob', 'builder')}`)).text, /^235 /, 'scrypt hashes work');
    second.close();
  });

  it('offers AUTH in the clear only when the listener allows it', async (t) => {
    const { port } = await startTestSluice(t, {
      listeners: [{ name: 'in', listen: '127.0.0.1:0', allowInsecureAuth: true }],
      auth: { users: [{ username: 'alice', password: 'wonderland' }] },
    });
    const client = await SmtpClient.connect(port);
    await client.reply();
    assert.ok((await client.command('EHLO client.test')).lines.includes('AUTH PLAIN LOGIN'));
    assert.match((await client.command(`AUTH PLAIN ${plain('alice', 'wonderland')}`)).text, /^235 /);
  });
});
