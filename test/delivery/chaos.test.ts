// Next-hop chaos (DL-2, DL-3, ST-5, RFC 5321 §6.1): Sluice relays to a next hop
// that fails at every step of the SMTP conversation (closes after MAIL, RCPT,
// 354, mid-body, after the final dot; hangs; refuses; 451 then close on RSET;
// all of it at random under load). Whatever the fault, every message must
// arrive (exactly once, or, when the hop took the final dot without answering,
// at least once), nothing may stay Active, the store must end empty, and Sluice
// must stay up and stop promptly. Real sockets on 127.0.0.1, the system clock,
// short timeouts and retries so that all of it takes seconds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settle } from '../support/clock.js';
import { startChaosHop, type ChaosHop, type CloseAfter } from '../support/chaos-hop.js';
import { chaosBody, expectCleanEnd, sluiceForHop, submitAll } from '../support/chaos-sluice.js';
import { dotStuff, SmtpClient } from '../support/smtp-client.js';

const subjectsOf = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `${tag} ${String(i).padStart(3, '0')}`);
const injectedOf = (hop: ChaosHop, kind: string) => hop.injected.filter((f) => f.kind === kind).length;

describe('the chaos hop itself (harness check)', () => {
  it('takes pipelined commands from one packet, unstuffs dots, records what it took, and injects faults where told', async (t) => {
    const hop = await startChaosHop(t, { dsn: true });
    const client = await SmtpClient.connect(hop.port);
    t.after(() => client.close());
    assert.equal((await client.reply()).code, 220);
    const ehlo = await client.command('EHLO client.test');
    for (const extension of ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', 'DSN']) assert.ok(ehlo.lines.includes(extension), extension);
    const body = chaosBody('pipelined');
    const stuffed = dotStuff(Buffer.from(body)).toString('latin1');
    // the whole transaction and the next command in one write
    client.write(`MAIL FROM:<a@example.net> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n`);
    assert.deepEqual([(await client.reply()).code, (await client.reply()).code, (await client.reply()).code, (await client.reply()).code], [250, 250, 250, 354]);
    client.write(`${stuffed}.\r\nNOOP\r\nRSET\r\n`);
    assert.deepEqual([(await client.reply()).code, (await client.reply()).code, (await client.reply()).code], [250, 250, 250]);
    const [received] = hop.messages;
    assert.equal(received!.mailLine, 'MAIL FROM:<a@example.net> BODY=8BITMIME');
    assert.deepEqual(received!.mailParams, ['BODY=8BITMIME']);
    assert.deepEqual(received!.rcptTo, ['b@example.com', 'c@example.com']);
    assert.equal(received!.body.toString('latin1'), body);
    assert.equal(received!.subject, 'pipelined');
    assert.equal(received!.messageId, '<pipelined@chaos.test>');
    assert.equal(received!.acknowledged, true);

    // afterDot: recorded, not acknowledged, closed without a reply
    hop.openConnections()[0]!.fault = { closeAfter: 'afterDot' };
    client.write(`MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n`);
    assert.deepEqual([(await client.reply()).code, (await client.reply()).code, (await client.reply()).code], [250, 250, 354]);
    client.write(Buffer.concat([dotStuff(Buffer.from(chaosBody('dot'))), Buffer.from('.\r\n')]));
    await client.closedByServer(3_000);
    assert.equal(hop.messages[1]?.subject, 'dot');
    assert.equal(hop.messages[1]?.acknowledged, false);

    // the next two connections get 421 at the greeting, then healthy again
    hop.faultNext(2, { refuseNew: 'greeting421' });
    for (let i = 0; i < 2; i++) {
      const refused = await SmtpClient.connect(hop.port);
      assert.equal((await refused.reply()).text, '421 4.3.2 busy');
      await refused.closedByServer(3_000);
    }
    const healthy = await SmtpClient.open(hop.port);
    // 451 at RCPT, then RSET closes without a reply
    hop.openConnections().at(-1)!.fault = { rcpt451ThenCloseOnRset: true };
    assert.equal((await healthy.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await healthy.command('RCPT TO:<b@example.com>')).code, 451);
    assert.equal((await healthy.command('DATA')).code, 554);
    healthy.write('RSET\r\n');
    await healthy.closedByServer(3_000);
    assert.deepEqual(hop.injected.map((f) => f.kind), ['close:afterDot', 'refuse:greeting421', 'refuse:greeting421', 'rcpt451ThenCloseOnRset']);
    assert.equal(hop.connections, 4);

    // freeze: no answer, the connection stays open
    const frozen = await SmtpClient.open(hop.port);
    t.after(() => frozen.close());
    assert.equal(hop.freezeOpenConnections(), 1);
    frozen.write('NOOP\r\n');
    await assert.rejects(frozen.reply(400), /no reply within/);
    assert.equal(frozen.closed, false);
  });
});

describe('next-hop faults during a transaction (DL-2, ST-5)', () => {
  const closes: Array<[CloseAfter, string]> = [
    ['mail', 'after MAIL, before its reply'],
    ['rcpt', 'after RCPT, before its reply'],
    ['data354', 'after the 354 reply to DATA'],
    ['midBody', 'in the middle of the body'],
  ];
  for (const [where, what] of closes) {
    it(`DL-2, ST-5: the next hop closes the connection ${what}: the message is deferred and delivered exactly once later, nothing stays Active`, async (t) => {
      const hop = await startChaosHop(t);
      const sluice = await sluiceForHop(t, hop);
      hop.faultNext(2, { closeAfter: where });
      const subjects = subjectsOf(`close-${where}`, 3);
      await submitAll(sluice.port, subjects);
      await expectCleanEnd(sluice, hop, { subjects });
      assert.ok(injectedOf(hop, `close:${where}`) >= 1, `the fault struck (${JSON.stringify(hop.injected)})`);
    });
  }

  it('RFC 5321 §6.1, DL-2: the next hop takes the whole body and the final dot, then dies before replying: the message is sent again (a duplicate is allowed, a loss is not)', async (t) => {
    const hop = await startChaosHop(t);
    const sluice = await sluiceForHop(t, hop);
    hop.faultNext(2, { closeAfter: 'afterDot' });
    const subjects = subjectsOf('after-dot', 3);
    await submitAll(sluice.port, subjects);
    await expectCleanEnd(sluice, hop, { subjects, duplicatesAllowed: true });
    const struck = injectedOf(hop, 'close:afterDot');
    assert.ok(struck >= 1, 'the fault struck');
    // every unanswered copy was sent again, and only those
    assert.equal(hop.messages.length, subjects.length + struck, `${hop.messages.length} copies for ${subjects.length} messages and ${struck} unanswered dots`);
  });

  it('DL-2, ST-5: a pooled connection whose next hop hangs is given up at commandTimeout; with new connections refused meanwhile, all 5 messages arrive within seconds once the hop is back', async (t) => {
    const hop = await startChaosHop(t);
    const sluice = await sluiceForHop(t, hop);
    await submitAll(sluice.port, ['pooled 000']);
    await hop.waitForMessages(1, { timeoutMs: 5_000 });
    // the connection that carried it stays open, waiting for more: hang it, and refuse new ones
    const frozen = hop.freezeOpenConnections();
    hop.setFault({ refuseNew: 'close' });
    assert.equal(frozen, 1, 'the delivering connection stayed pooled after its message');
    const subjects = subjectsOf('pooled', 6);
    await submitAll(sluice.port, subjects.slice(1));
    await settle(2_500); // past commandTimeout (1.5 s): the hung connection must have been given up
    assert.equal(hop.messages.length, 1, 'nothing can have arrived meanwhile');
    assert.ok(hop.connections >= 2, `a new connection was tried once the hung one was given up (${hop.connections} connections)`);
    const back = Date.now();
    hop.setFault(undefined);
    await hop.waitForMessages(6, { timeoutMs: 8_000 });
    const took = Date.now() - back;
    assert.ok(took < 6_000, `all 5 arrived ${took} ms after the hop came back (timeouts and retries are seconds, not the 5-minute defaults)`);
    await expectCleanEnd(sluice, hop, { subjects });
  });

  it('DL-3: a next hop that answers 421 at the greeting for a while is retried; everything arrives once it is healthy', async (t) => {
    const hop = await startChaosHop(t, { fault: { refuseNew: 'greeting421' } });
    const sluice = await sluiceForHop(t, hop);
    const subjects = subjectsOf('greeting421', 4);
    await submitAll(sluice.port, subjects);
    await hop.waitUntil(() => hop.connections >= 3, 8_000, 'three refused connections');
    assert.equal(hop.messages.length, 0);
    hop.setFault(undefined);
    await expectCleanEnd(sluice, hop, { subjects });
    assert.ok(injectedOf(hop, 'refuse:greeting421') >= 3);
  });

  it('DL-3: a connection attempt that hangs at the greeting while another connection delivers and then dies leaves the queue neither stalled nor without a retry', async (t) => {
    const hop = await startChaosHop(t, { fault: { refuseNew: 'close' } });
    const sluice = await sluiceForHop(t, hop, { maxConnections: 2 });
    const subjects = subjectsOf('busy-then-gone', 10);
    await submitAll(sluice.port, subjects);
    await hop.waitUntil(() => hop.connections >= 1, 5_000, 'a refused connection attempt');
    // at the next retry: the first connection delivers one message and dies at its next MAIL, while a second
    // one, opened alongside it, hangs at the greeting until connectTimeout
    hop.faultNext(1, { closeAfter: 'mail', afterTransactions: 1 });
    hop.setFault({ freeze: 'greeting' });
    await hop.waitUntil(() => injectedOf(hop, 'close:mail') >= 1, 8_000, 'the first connection dying');
    await settle(1_500); // past connectTimeout (1 s): every attempt on a hung greeting has failed
    assert.ok(injectedOf(hop, 'freeze:greeting') >= 1, `a second connection hung at the greeting (${JSON.stringify(hop.injected)})`);
    hop.setFault(undefined);
    await expectCleanEnd(sluice, hop, { subjects, arrivalTimeoutMs: 10_000, drainTimeoutMs: 3_000 });
  });

  it('DL-2, ST-5: 451 at RCPT and then a close at RSET does not leave the message Active forever, nor hang stop()', async (t) => {
    const hop = await startChaosHop(t);
    const sluice = await sluiceForHop(t, hop);
    hop.faultNext(2, { rcpt451ThenCloseOnRset: true });
    const subjects = subjectsOf('rcpt451-rset', 2);
    await submitAll(sluice.port, subjects);
    await expectCleanEnd(sluice, hop, { subjects, arrivalTimeoutMs: 10_000, drainTimeoutMs: 3_000 });
    assert.ok(injectedOf(hop, 'rcpt451ThenCloseOnRset') >= 1, 'the fault struck');
  });
});

describe('random next-hop faults under load (DL-2, ST-5, RFC 5321 §6.1)', () => {
  it('DL-2, ST-5, RFC 5321 §6.1: 300 messages over 6 concurrent sessions while the hop injects seeded random faults, then none: every message arrives, acknowledged exactly once', { timeout: 60_000 }, async (t) => {
    const seed = 0x5eed_c4a0;
    const hop = await startChaosHop(t, { fault: { random: { seed, rate: 0.12 } } });
    const sluice = await sluiceForHop(t, hop, { maxConnections: 6 });
    const subjects = subjectsOf('load', 300);
    await submitAll(sluice.port, subjects, 6);
    // the chaos goes on until two thirds have got through it (or 15 s), then the hop is healthy, open connections included
    await hop.waitUntil(() => hop.distinct('subject', true).size >= 200, 15_000).catch(() => undefined);
    hop.setFault(undefined, { includeOpen: true });
    t.diagnostic(`seed ${seed}: ${hop.injected.length} faults injected while ${hop.distinct('subject', true).size} messages got through`);
    await expectCleanEnd(sluice, hop, { subjects, duplicatesAllowed: true, arrivalTimeoutMs: 20_000, drainTimeoutMs: 5_000 });
    const kinds = new Set(hop.injected.map((f) => f.kind));
    assert.ok(hop.injected.length >= 15 && kinds.size >= 6, `the hop really was chaotic: ${hop.injected.length} faults of ${kinds.size} kinds`);
  });
});
