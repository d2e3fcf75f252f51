// The log at the default level (issue 14 "Logs an administrator can grep", MG-5): real SMTP sessions into a
// Sluice that relays to a real sink, and the info lines they leave: connect and disconnect, refusals with their
// code and reason, an AUTH failure with the client's address (matched by the fail2ban filter of docs/logging.md),
// a message received, and a delivery attempt per recipient (sent, deferred on 451, bounced on 550).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatText } from '../../src/observability/text-format.js';
import { selfSignedCert } from '../support/certs.js';
import { startSink } from '../support/sink.js';
import { startTestSluice, type LogEntry, type TestSluice } from '../support/sluice.js';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';

const DOCS = fileURLToPath(new URL('../../../docs/logging.md', import.meta.url));
const body = (subject: string) => `Subject: ${subject}\r\nMessage-ID: <${subject}@example.net>\r\n\r\nHello.\r\n`;
const plain = (user: string, password: string) => Buffer.from(`\0${user}\0${password}`).toString('base64');
const at = (sluice: TestSluice, module: string, msg: string) => sluice.logs.filter((e) => e.module === module && e.msg === msg);

/** The failregex lines of the fail2ban filter in docs/logging.md, as fail2ban reads them (`<HOST>` is the address). */
async function fail2banRegexes(): Promise<RegExp[]> {
  const doc = await readFile(DOCS, 'utf8');
  const filter = /```ini\n(\[Definition\][\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(filter, 'docs/logging.md has the fail2ban filter');
  const lines = filter.split('\n');
  const start = lines.findIndex((l) => l.startsWith('failregex'));
  const regexes = [lines[start]!.replace(/^failregex\s*=\s*/, '')];
  for (const line of lines.slice(start + 1)) {
    if (!/^\s+\S/.test(line)) break;
    regexes.push(line.trim());
  }
  // fail2ban's own expansion of <HOST>: an IPv4 or IPv6 address, or a host name
  return regexes.map((r) => new RegExp(r.replace('<HOST>', '(?:::f{4,6}:)?(?<host>[\\w\\-.^_]*\\w|[0-9a-fA-F:]+)')));
}

describe('the log at the default level', () => {
  it('logs connect, disconnect and refusals with code, reason, client and listener (relay denied, too many recipients, bad sequence, suspended listener)', async (t) => {
    const sluice = await startTestSluice(t, {
      log: { level: 'info' },
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', maxRecipients: 1 }],
      acceptedDomains: ['example.com'],
      relay: { allowFrom: ['10.0.0.0/8'] },
    });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command('RCPT TO:<early@example.com>')).code, 503);
    assert.equal((await client.command('MAIL FROM:<spam@example.org>')).code, 250);
    assert.equal((await client.command('RCPT TO:<victim@elsewhere.test>')).text, '550 5.7.1 Relaying denied');
    assert.equal((await client.command('RCPT TO:<one@example.com>')).code, 250);
    assert.equal((await client.command('RCPT TO:<two@example.com>')).code, 452);
    await client.command('QUIT');
    await client.closedByServer();

    const connect = await sluice.waitForLog((e) => e.module === 'smtp' && e.msg === 'connect');
    assert.equal(connect.level, 30);
    assert.equal(connect.client, '127.0.0.1');
    assert.equal(connect.listener, 'inbound');
    assert.equal(typeof connect.clientName, 'string');
    const disconnect = await sluice.waitForLog((e) => e.module === 'smtp' && e.msg === 'disconnect');
    assert.equal(disconnect.session, connect.session);
    assert.equal(disconnect.commands, 'ehlo=1 rcpt=4 mail=1 quit=1 commands=7');

    const rejects = at(sluice, 'smtp', 'reject');
    const relay = rejects.find((e) => e.reason === 'relayDenied');
    assert.ok(relay, 'relay denied is logged');
    assert.deepEqual(
      { level: relay.level, command: relay.command, reply: relay.reply, from: relay.from, to: relay.to, client: relay.client, listener: relay.listener },
      { level: 30, command: 'RCPT', reply: '550 5.7.1 Relaying denied', from: 'spam@example.org', to: 'victim@elsewhere.test', client: '127.0.0.1', listener: 'inbound' },
    );
    assert.match(formatText(relay), /sluice\/smtp\[\d+\]: NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.7\.1 Relaying denied; from=<spam@example\.org> to=<victim@elsewhere\.test> listener=inbound/);
    const tooMany = rejects.find((e) => e.to === 'two@example.com');
    assert.match(String(tooMany?.reply), /^452 4\.5\.3 /, 'too many recipients, with the code smtp-server sends');
    assert.ok(rejects.some((e) => e.command === 'RCPT' && String(e.reply).startsWith('503')), 'a protocol refusal (bad sequence)');
    assert.equal(rejects.length, 3, 'one line per refusal');

    // a suspended listener refuses at the connection
    sluice.sluice.listeners[0]!.suspended = true;
    const refused = await SmtpClient.connect(sluice.port);
    assert.match((await refused.reply()).text, /^421 4\.3\.2 /);
    const suspended = await sluice.waitForLog((e) => e.msg === 'reject' && e.reason === 'listenerSuspended');
    assert.equal(suspended.command, 'CONNECT');
    assert.equal(suspended.reply, '421 4.3.2 Service not accepting mail at the moment, try again later');
  });

  it('logs an AUTH failure at warn with the client address, matched by the documented fail2ban filter in both formats', async (t) => {
    const sluice = await startTestSluice(t, {
      log: { level: 'info' },
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', allowInsecureAuth: true }],
      auth: { users: [{ username: 'alice', password: 'wonderland' }] },
    });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command(`AUTH PLAIN ${plain('mallory', 'guess')}`)).code, 535);
    assert.equal((await client.command(`AUTH PLAIN ${plain('alice', 'wonderland')}`)).code, 235);
    client.close();
    const failures = await (async () => {
      await sluice.waitForLog((e) => e.msg === 'auth failed');
      return at(sluice, 'smtp', 'auth failed');
    })();
    assert.equal(failures.length, 1, 'only the failed attempt');
    const failure = failures[0]!;
    assert.equal(failure.level, 40);
    assert.equal(failure.client, '127.0.0.1');
    assert.equal(failure.user, 'mallory');
    assert.equal(failure.method, 'PLAIN');
    assert.equal(failure.reply, '535 5.7.8 Authentication credentials invalid');
    assert.ok(!JSON.stringify(sluice.logs).includes('guess'), 'no password in the log');
    assert.ok(!at(sluice, 'smtp', 'reject').some((e) => String(e.reply).startsWith('535')), 'an AUTH failure is one line, not also a reject');

    const regexes = await fail2banRegexes();
    const jsonLine = JSON.stringify(failure);
    const textLine = formatText(failure);
    for (const line of [textLine, jsonLine]) {
      const hosts = regexes.map((r) => r.exec(line)?.groups?.host).filter(Boolean);
      assert.deepEqual(hosts, ['127.0.0.1'], `one failregex finds the client in ${line}`);
    }
    // and no other line of the session is taken for a failure
    for (const entry of sluice.logs.filter((e) => e !== failure)) {
      for (const line of [JSON.stringify(entry), formatText(entry)]) assert.ok(!regexes.some((r) => r.test(line)), line);
    }
  });

  it('logs each message received with from, size, recipients, client, TLS and the authenticated user', async (t) => {
    const tls = await selfSignedCert(t);
    const sluice = await startTestSluice(t, {
      log: { level: 'info' },
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', tls }],
      auth: { users: [{ username: 'alice', password: 'wonderland' }] },
    });
    const client = await SmtpClient.open(sluice.port);
    await client.startTls();
    assert.equal((await client.command(`AUTH PLAIN ${plain('alice', 'wonderland')}`)).code, 235);
    const reply = await client.send('a@example.net', ['b@example.com', 'c@example.com'], body('received'));
    client.close();
    const id = queueIdOf(reply);
    const accepted = await sluice.waitForLog((e) => e.module === 'intake' && e.msg === 'accepted');
    assert.equal(accepted.level, 30);
    assert.equal(accepted.queueId, id);
    assert.equal(accepted.from, 'a@example.net');
    assert.deepEqual(accepted.to, ['b@example.com', 'c@example.com']);
    assert.equal(accepted.nrcpt, 2);
    assert.equal(accepted.size, (await sluice.sluice.store.getMessage(id))!.size);
    assert.equal(accepted.client, '127.0.0.1');
    assert.equal(accepted.listener, 'inbound');
    assert.match(String(accepted.tls), /^TLSv1\.[23]$/);
    assert.equal(accepted.user, 'alice');
    assert.equal(accepted.messageId, '<received@example.net>');
    assert.match(formatText(accepted), new RegExp(`sluice/intake\\[\\d+\\]: ${id}: from=<a@example\\.net>, size=\\d+, nrcpt=2, to=<b@example\\.com>,<c@example\\.com>, client=\\S+\\[127\\.0\\.0\\.1\\] listener=inbound tls=TLSv1\\.\\d user=alice`));
  });

  it('logs every delivery attempt per recipient: sent, deferred (451) and bounced (550), with relay, delay and reply', async (t) => {
    const sink = await startSink(t, {
      rcptReply: (address) => (address.startsWith('later') ? '451 4.2.1 Mailbox busy' : address.startsWith('gone') ? '550 5.1.1 No such user' : undefined),
    });
    const sluice = await startTestSluice(t, {
      log: { level: 'info' },
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
    });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['ok@example.com', 'later@example.com', 'gone@example.com'], body('delivery'));
    await sink.waitFor(1);
    const line = (to: string) => sluice.waitForLog((e) => e.module === 'delivery' && e.msg === 'delivery' && e.to === to);
    const [sent, deferred, bounced] = await Promise.all([line('ok@example.com'), line('later@example.com'), line('gone@example.com')]);
    for (const entry of [sent, deferred, bounced]) {
      assert.equal(entry.level, 30);
      assert.equal(entry.queueId, id);
      assert.equal(entry.relay, `127.0.0.1[127.0.0.1]:${sink.port}`);
      assert.equal(typeof entry.delay, 'number');
      assert.equal(entry.attempt, 1);
      assert.equal(entry.queue, 'backend');
    }
    assert.equal(sent.status, 'sent');
    assert.match(String(sent.reply), /^250 /);
    assert.equal(deferred.status, 'deferred');
    assert.equal(deferred.reply, '451 4.2.1 Mailbox busy');
    assert.equal(deferred.dsn, '4.2.1');
    assert.equal(bounced.status, 'bounced');
    assert.equal(bounced.reply, '550 5.1.1 No such user');
    assert.equal(bounced.dsn, '5.1.1');
    assert.match(formatText(deferred), new RegExp(`sluice/delivery\\[\\d+\\]: ${id}: to=<later@example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port}, delay=[\\d.]+, attempt=1, dsn=4\\.2\\.1, status=deferred \\(451 4\\.2\\.1 Mailbox busy\\)`));
    assert.equal(at(sluice, 'delivery', 'delivery').filter((e) => e.queueId === id).length, 3, 'one line per recipient');
    assert.ok(!sluice.logs.some((e: LogEntry) => e.level === 20), 'nothing at debug');
  });
});
