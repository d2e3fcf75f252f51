// SMTPUTF8 and 8BITMIME on the way out (DL-10, RFC 6531 §3.4-3.5, RFC 6152):
// passed on when the message came with them, and never silently downgraded:
// a next hop that lacks what the message needs fails those recipients with a
// report, read here by Python's email package.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReport } from '../support/dsn.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const routes = (hop: number, senders: number) => [
  { name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${hop}`], tls: 'none' },
  { name: 'senders', match: ['example.net'], smartHosts: [`127.0.0.1:${senders}`], tls: 'none' },
];

async function submit(port: number, mailFrom: string, rcpt: string, body: string): Promise<void> {
  const client = await SmtpClient.open(port);
  try {
    assert.equal((await client.command(mailFrom)).code, 250);
    assert.equal((await client.command(`RCPT TO:<${rcpt}>`)).code, 250);
    assert.equal((await client.data(body)).code, 250);
  } finally {
    client.close();
  }
}

describe('SMTPUTF8 and 8BITMIME to the next hop (DL-10)', () => {
  it('fails a UTF-8 sender towards a hop without SMTPUTF8 with a 5.6.7 report, instead of an empty Return-Path', async (t) => {
    const hop = await startSink(t, { lmtp: true, hideSmtpUtf8: true });
    const senders = await startSink(t);
    const sluice = await startTestSluice(t, { routes: [{ ...routes(hop.port, senders.port)[0]!, protocol: 'lmtp' }, routes(hop.port, senders.port)[1]] });
    await submit(sluice.port, 'MAIL FROM:<jörg@example.net> SMTPUTF8', 'user@example.com', 'From: jörg@example.net\r\nSubject: Grüße\r\n\r\nHallo.\r\n');
    const [report] = await senders.waitFor(1);
    assert.equal(hop.messages.length, 0, 'nothing reached the hop');
    assert.equal(report!.to[0], 'jörg@example.net');
    assert.equal(report!.mailParams.SMTPUTF8, true, 'the report to a UTF-8 address asks for SMTPUTF8 too');
    const parsed = parseReport(report!.body);
    assert.equal(parsed.report_type, 'delivery-status');
    assert.equal(parsed.recipients[0]!['Action'], 'failed');
    assert.equal(parsed.recipients[0]!['Status'], '5.6.7');
    assert.match(parsed.recipients[0]!['Diagnostic-Code']!, /SMTPUTF8/);
  });

  it('fails UTF-8 headers towards a hop without SMTPUTF8, and relays an all-ASCII message declared SMTPUTF8 unchanged without it', async (t) => {
    const hop = await startSink(t, { hideSmtpUtf8: true });
    const senders = await startSink(t);
    const sluice = await startTestSluice(t, { routes: routes(hop.port, senders.port) });
    await submit(sluice.port, 'MAIL FROM:<a@example.net> SMTPUTF8', 'user@example.com', 'Subject: Grüße\r\n\r\nHallo.\r\n');
    await submit(sluice.port, 'MAIL FROM:<a@example.net> SMTPUTF8', 'user@example.com', 'Subject: plain\r\n\r\nHello.\r\n');
    const [relayed] = await hop.waitFor(1);
    assert.match(relayed!.body.toString(), /Subject: plain/);
    assert.equal(relayed!.mailParams.SMTPUTF8, undefined);
    const [report] = await senders.waitFor(1);
    assert.equal(parseReport(report!.body).recipients[0]!['Status'], '5.6.7');
  });

  it('passes SMTPUTF8 on MAIL FROM to a hop that offers it, for an ASCII envelope too', async (t) => {
    const hop = await startSink(t);
    const sluice = await startTestSluice(t, { routes: routes(hop.port, hop.port) });
    await submit(sluice.port, 'MAIL FROM:<a@example.net> SMTPUTF8', 'user@example.com', 'Subject: ascii\r\n\r\nHello.\r\n');
    await submit(sluice.port, 'MAIL FROM:<jörg@example.net> SMTPUTF8', 'ü@example.com', 'Subject: Grüße\r\n\r\nHallo.\r\n');
    await submit(sluice.port, 'MAIL FROM:<a@example.net>', 'user@example.com', 'Subject: none\r\n\r\nHello.\r\n');
    const sunk = await hop.waitFor(3);
    const bySubject = new Map(sunk.map((m) => [/Subject: (.*)\r\n/.exec(m.body.toString())![1], m]));
    assert.equal(bySubject.get('ascii')!.mailParams.SMTPUTF8, true);
    assert.equal(bySubject.get('Grüße')!.mailParams.SMTPUTF8, true);
    assert.equal(bySubject.get('Grüße')!.from, 'jörg@example.net');
    assert.deepEqual(bySubject.get('Grüße')!.to, ['ü@example.com']);
    assert.equal(bySubject.get('none')!.mailParams.SMTPUTF8, undefined);
  });

  it('fails 8-bit data towards a hop without 8BITMIME with 5.6.3, and relays a 7-bit body declared 8BITMIME unchanged', async (t) => {
    const hop = await startSink(t, { hide8BitMime: true });
    const senders = await startSink(t);
    const sluice = await startTestSluice(t, { routes: routes(hop.port, senders.port) });
    await submit(sluice.port, 'MAIL FROM:<a@example.net> BODY=8BITMIME', 'user@example.com', 'Subject: eight\r\n\r\nK\xe4se.\r\n');
    await submit(sluice.port, 'MAIL FROM:<a@example.net> BODY=8BITMIME', 'user@example.com', 'Subject: seven\r\n\r\nCheese.\r\n');
    const [relayed] = await hop.waitFor(1);
    assert.match(relayed!.body.toString(), /Subject: seven/);
    assert.equal(relayed!.mailParams.BODY, undefined);
    const [report] = await senders.waitFor(1);
    const parsed = parseReport(report!.body);
    assert.equal(parsed.recipients[0]!['Status'], '5.6.3');
  });

  it('passes BODY=8BITMIME on to a hop that offers it', async (t) => {
    const hop = await startSink(t);
    const sluice = await startTestSluice(t, { routes: routes(hop.port, hop.port) });
    await submit(sluice.port, 'MAIL FROM:<a@example.net> BODY=8BITMIME', 'user@example.com', 'Subject: eight\r\n\r\nK\xe4se.\r\n');
    const [relayed] = await hop.waitFor(1);
    assert.equal(relayed!.mailParams.BODY, '8BITMIME');
  });
});
