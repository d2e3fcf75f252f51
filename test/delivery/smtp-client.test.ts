// The outbound SMTP adapter over nodemailer (DL-1, DL-9, DL-10): these tests
// fail when the library stops behaving as src/delivery/smtp-client.ts expects
// (the EHLO reply in lastServerResponse, the one per-connection patch that puts
// SMTPUTF8 on MAIL FROM, every call settling when the next hop hangs or closes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemClock } from '../../src/clock.js';
import { connect, ConnectFailure, type ClientOptions, type Transaction } from '../../src/delivery/smtp-client.js';
import { startChaosHop } from '../support/chaos-hop.js';
import { startSink } from '../support/sink.js';

const options = (overrides: Partial<ClientOptions> = {}): ClientOptions => ({
  name: 'sluice.test',
  protocol: 'smtp',
  tls: 'none',
  connectTimeout: 1000,
  commandTimeout: 400,
  dataTimeout: 400,
  clock: systemClock,
  ...overrides,
});

const transaction = (overrides: Partial<Transaction> = {}): Transaction => ({
  from: 'a@example.net',
  to: ['b@example.com'],
  dsn: {},
  size: 30,
  eightBit: false,
  smtpUtf8: false,
  body: [Buffer.from('Subject: t\r\n\r\nhello\r\n')],
  ...overrides,
});

const target = (port: number) => ({ host: '127.0.0.1', port, name: 'hop.test' });

/** Resolves with how long the promise took, failing if it takes longer than `limitMs`. */
async function within<T>(limitMs: number, promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const value = await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not settled within ${limitMs} ms`)), limitMs)))]);
  clearTimeout(timer);
  return { value, ms: Date.now() - started };
}

describe('outbound SMTP adapter (DL-9, DL-10)', () => {
  it('reads the keywords of the EHLO reply and puts SMTPUTF8 on MAIL FROM of an ASCII envelope only when asked', async (t) => {
    const sink = await startSink(t, { hideDsn: true });
    const connection = await connect(target(sink.port), options());
    t.after(() => connection.close());
    assert.ok(connection.extensions.has('SMTPUTF8') && connection.extensions.has('8BITMIME') && connection.extensions.has('PIPELINING'));
    assert.equal(connection.extensions.has('DSN'), false);
    assert.equal((await connection.send(transaction({ smtpUtf8: true, eightBit: true }))).get('b@example.com')?.code, 250);
    assert.equal((await connection.send(transaction())).get('b@example.com')?.code, 250);
    const [first, second] = await sink.waitFor(2);
    assert.deepEqual([first!.mailParams.SMTPUTF8, first!.mailParams.BODY], [true, '8BITMIME']);
    assert.equal(second!.mailParams.SMTPUTF8, undefined);
  });

  it('settles a transaction whose RCPT got 451 when the next hop closes instead of answering RSET', async (t) => {
    const hop = await startChaosHop(t, { fault: { rcpt451ThenCloseOnRset: true } });
    const connection = await connect(target(hop.port), options({ commandTimeout: 60_000 }));
    const { value: replies } = await within(3000, connection.send(transaction()));
    assert.match(replies.get('b@example.com')!.text, /^451/);
    assert.equal(connection.usable, false, 'the session is over');
    connection.close();
  });

  it('ends a transaction on a frozen connection at its own deadline, not the library\'s', async (t) => {
    const hop = await startChaosHop(t);
    const connection = await connect(target(hop.port), options());
    hop.freezeOpenConnections();
    const { value: replies, ms } = await within(3000, connection.send(transaction()));
    assert.match(replies.get('b@example.com')!.text, /^451 4\.4\.2 No reply .* \(timeout\)/);
    assert.ok(ms >= 350, `waited ${ms} ms`);
    assert.equal(connection.usable, false);
    connection.close();
  });

  it('gives up on a next hop that never sends its greeting within connectTimeout', async (t) => {
    const hop = await startChaosHop(t, { fault: { freeze: 'greeting' } });
    const { value: failure } = await within(3000, connect(target(hop.port), options({ connectTimeout: 300 })).then(() => undefined, (error: unknown) => error));
    assert.ok(failure instanceof ConnectFailure);
    assert.match(failure.reply, /^451 4\.4\.2 No reply from hop\.test within 0\.3 s/);
  });

  it('reports a 421 greeting as the reason the next hop cannot be reached', async (t) => {
    const hop = await startChaosHop(t, { fault: { refuseNew: 'greeting421' } });
    const failure = await connect(target(hop.port), options()).then(() => undefined, (error: unknown) => error);
    assert.ok(failure instanceof ConnectFailure);
    assert.match(failure.reply, /421/);
  });
});
