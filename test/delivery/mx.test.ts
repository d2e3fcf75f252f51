// Delivery by DNS MX with a real DNS server on loopback (RT-1, RT-4): MX
// priority and failover, A/AAAA fallback without MX, null MX (RFC 7505) and
// NXDOMAIN fail at once, SERVFAIL keeps the mail waiting.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startDnsServer } from '../support/dns-server.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { startTestSluice } from '../support/sluice.js';

const BODY = 'Subject: mx\r\n\r\nvia MX\r\n';

async function mxSluice(t: Parameters<typeof startTestSluice>[0], dns: string, port: number) {
  return startTestSluice(t, { dns: { servers: [dns], timeout: '2s' }, routes: [{ name: 'internet', match: ['*'], mx: true, port, tls: 'none' }] });
}

describe('delivery by MX (RT-1, RT-4)', () => {
  it('delivers to the most preferred MX host and fails over to the next when it is down', async (t) => {
    // both MX hosts listen on the same port: one on 127.0.0.1, one on ::1
    const secondary = await startSink(t, { host: '::1' });
    const primary = await startSink(t, { host: '127.0.0.1', port: secondary.port });
    const dns = await startDnsServer(t, {
      'example.test': { mx: [{ priority: 20, exchange: 'mx2.example.test' }, { priority: 10, exchange: 'mx1.example.test' }] },
      'mx1.example.test': { a: ['127.0.0.1'] },
      'mx2.example.test': { aaaa: ['::1'] },
    });
    const sluice = await mxSluice(t, dns.address, secondary.port);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.test'], BODY);
    await primary.waitFor(1);
    assert.equal(secondary.messages.length, 0, 'the preferred MX took it');
    assert.ok(dns.queries.includes('MX example.test'));

    await primary.stop();
    await SmtpClient.submit(sluice.port, 'a@example.net', ['c@example.test'], BODY);
    const [sunk] = await secondary.waitFor(1);
    assert.deepEqual(sunk!.to, ['c@example.test']);
  });

  it('falls back to the A record of a domain without MX (RFC 5321 §5.1)', async (t) => {
    const sink = await startSink(t);
    const dns = await startDnsServer(t, { 'plain.test': { a: ['127.0.0.1'] } });
    const sluice = await mxSluice(t, dns.address, sink.port);
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@plain.test'], BODY);
    await sink.waitFor(1);
    assert.ok(dns.queries.includes('A plain.test'));
  });

  it('fails at once for a null MX (RFC 7505) and for NXDOMAIN', async (t) => {
    const sink = await startSink(t);
    const dns = await startDnsServer(t, { 'nomail.test': { mx: [{ priority: 0, exchange: '.' }] }, 'gone.test': 'NXDOMAIN' });
    const sluice = await mxSluice(t, dns.address, sink.port);
    const nullMx = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@nomail.test'], BODY);
    const nxdomain = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@gone.test'], BODY);
    const first = await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === nullMx);
    assert.match(String(first.reply), /^556 5\.1\.10 .*null MX/);
    const second = await sluice.waitForLog((e) => e.msg === 'failed' && e.queueId === nxdomain);
    assert.match(String(second.reply), /^550 5\.1\.2 .*NXDOMAIN/);
    // the reports to a@example.net fail in turn (NXDOMAIN) and are dropped, not reported
    const deadline = Date.now() + 10_000;
    while ((await sluice.sluice.store.stats()).messages > 0) {
      assert.ok(Date.now() < deadline, 'everything leaves the store');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(sluice.logs.filter((e) => e.msg === 'dsn').length, 2);
  });

  it('keeps the mail and puts the queue in Retry when DNS fails temporarily (SERVFAIL)', async (t) => {
    const sink = await startSink(t);
    const dns = await startDnsServer(t, { 'flaky.test': 'SERVFAIL' });
    const sluice = await mxSluice(t, dns.address, sink.port);
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@flaky.test'], BODY);
    const deadline = Date.now() + 15_000;
    while (sluice.sluice.delivery.queues().find((q) => q.name === 'flaky.test')?.status !== 'Retry') {
      assert.ok(Date.now() < deadline, 'queue went to Retry');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const queue = sluice.sluice.delivery.queues().find((q) => q.name === 'flaky.test')!;
    assert.match(queue.lastError!, /^451 4\.4\.3 .*ESERVFAIL/);
    assert.equal(queue.deliveryType, 'DnsConnectorDelivery');
    assert.ok(await sluice.sluice.store.getMessage(id), 'the message waits');
  });
});
