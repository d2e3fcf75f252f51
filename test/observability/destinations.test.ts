// The log's formats and destinations (issue 14 "Logs an administrator can grep", MG-5): the text format over
// real SMTP sessions, in this process and from the real `sluice start` on stdout; a log file that pino-roll
// rotates by size and that keeps being written; syslog over UDP in both formats; and the tracking log's
// deferred entries and its retention on the test clock.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { TestClock } from '../../src/clock.js';
import { parseConfigText } from '../../src/config/load.js';
import { startSluice } from '../../src/main.js';
import { closeLogger, createLogger } from '../../src/observability/logger.js';
import { openTrackingLog, retainDaysOf } from '../../src/observability/tracking.js';
import { startSink } from '../support/sink.js';
import { CLI, TEST_TOKEN, startTestSluice } from '../support/sluice.js';
import { SmtpClient } from '../support/smtp-client.js';
import { tempDir } from '../support/temp.js';

const DAY = 24 * 3600 * 1000;

function configText(dir: string, config: Record<string, unknown>): string {
  return stringify({
    node: 'test',
    hostname: 'sluice.test',
    dataDir: join(dir, 'data'),
    listeners: [{ name: 'inbound', listen: '127.0.0.1:0' }],
    routes: [],
    acceptedDomains: ['example.com'],
    relay: { allowFrom: ['10.0.0.0/8'] },
    management: { listen: '127.0.0.1:0', token: TEST_TOKEN },
    ...config,
  });
}

/** A session that is refused once: connect, a relay refusal, disconnect. */
async function refusedSession(port: number): Promise<void> {
  const client = await SmtpClient.open(port);
  await client.command('MAIL FROM:<a@example.net>');
  assert.equal((await client.command('RCPT TO:<b@elsewhere.test>')).code, 550);
  await client.command('QUIT');
  await client.closedByServer();
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function startWithLogger(t: TestContext, config: Record<string, unknown>, destination?: NodeJS.WritableStream) {
  const dir = await tempDir(t);
  const parsed = parseConfigText(configText(dir, config), join(dir, 'sluice.yaml'));
  const logger = createLogger(parsed, destination);
  const sluice = await startSluice(parsed, { clock: new TestClock(), logger });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    SmtpClient.closeAll();
    await sluice.stop();
    await closeLogger(logger);
  };
  t.after(stop);
  return { dir, parsed, sluice, port: sluice.listeners[0]!.address.port, stop };
}

describe('log formats and destinations', () => {
  it('log.format text: one readable line per event, like maillog', async (t) => {
    const lines: string[] = [];
    const collector = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const { port } = await startWithLogger(t, { log: { level: 'info', format: 'text' } }, collector);
    await refusedSession(port);
    const disconnect = await waitFor('the disconnect line', () => lines.find((l) => / disconnect from /.test(l)));
    const stamp = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z sluice(\/\w+)?\[\d+\]: /;
    for (const line of lines) assert.match(line, stamp, "time, program/module[pid]");
    assert.ok(lines.some((l) => / sluice\/smtp\[\d+\]: connect from \S+\[127\.0\.0\.1\] listener=inbound session=\w+$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /: NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.7\.1 Relaying denied; from=<a@example\.net> to=<b@elsewhere\.test> listener=inbound session=\w+ reason=relayDenied$/.test(l)), lines.join('\n'));
    assert.match(disconnect, /disconnect from \S+\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 quit=1 commands=4 listener=inbound/);
    assert.ok(lines.some((l) => /sluice\/intake\[\d+\]: listener started listener=inbound address=127\.0\.0\.1 port=\d+ tls=false$/.test(l)), 'other entries: message and key=value fields');
    assert.ok(!lines.some((l) => l.startsWith('{')), 'no JSON');
  });

  it('sluice start with log.format text writes text on stdout (through a pino transport)', async (t) => {
    const dir = await tempDir(t);
    const configPath = join(dir, 'sluice.yaml');
    await writeFile(configPath, configText(dir, { log: { level: 'info', format: 'text' } }));
    const child = spawn(process.execPath, [CLI, 'start', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.after(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
    const port = Number(await waitFor('the listener', () => /listener started listener=inbound .*port=(\d+)/.exec(lines.join('\n'))?.[1]));
    await refusedSession(port);
    await waitFor('the reject line', () => lines.find((l) => /sluice\/smtp\[\d+\]: NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.7\.1 Relaying denied;/.test(l)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(lines.some((l) => /sluice\[\d+\]: sluice stopped$/.test(l)), 'the last line is written before the process ends');
  });

  it('log.destination file: pino-roll starts a new file at maxSize, keeps `keep` old ones, and goes on writing', async (t) => {
    const { dir, port, stop } = await startWithLogger(t, {
      log: { level: 'info', format: 'text', destination: 'file', file: { maxSize: '1KB', frequency: 'never', keep: 2 } },
    });
    const logDir = join(dir, 'data', 'log');
    const files = async () => (await readdir(logDir).catch(() => [] as string[])).filter((f) => /^sluice\.\d+\.log$/.test(f)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
    for (let i = 0; i < 12; i++) await refusedSession(port);
    await waitFor('rotations', async () => ((await files()).some((f) => Number(f.split('.')[1]) >= 4) ? true : undefined));
    const marker = await (async () => {
      const client = await SmtpClient.open(port, 'last-session.test');
      await client.command('MAIL FROM:<last@example.net>');
      await client.command('RCPT TO:<last@elsewhere.test>');
      client.close();
      return 'to=<last@elsewhere.test>';
    })();
    // written after the rotations: in the newest file, or the one before if that write filled it
    await waitFor('the last session in one of the newest files', async () => {
      const newest = (await files()).slice(-2);
      const texts = await Promise.all(newest.map((name) => readFile(join(logDir, name), 'utf8')));
      return newest.length === 2 && texts.some((text) => text.includes(marker)) ? true : undefined;
    });
    await stop();
    const names = await files();
    assert.ok(names.length <= 3, `at most keep + 1 files: ${names.join(', ')}`);
    assert.ok(names.length >= 2, `rotated: ${names.join(', ')}`);
    for (const name of names.slice(0, -1)) {
      const size = (await stat(join(logDir, name))).size;
      // pino-roll closes a file at the write that reaches the limit, or before one that would pass it
      assert.ok(size >= 1024 - 600 && size < 1024 + 600, `${name} was closed at about 1 KB (${size} octets)`);
      const text = await readFile(join(logDir, name), 'utf8');
      assert.ok(text.endsWith('\n') && text.split('\n').slice(0, -1).every((l) => /^\d{4}-\S+Z sluice/.test(l)), 'whole lines only');
    }
  });

  it('log.destination syslog: RFC 5424 messages over UDP, the mail facility, JSON or text', async (t) => {
    const socket = createSocket('udp4');
    const received: string[] = [];
    socket.on('message', (message) => received.push(message.toString()));
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    t.after(() => socket.close());
    const port = socket.address().port;
    for (const format of ['json', 'text'] as const) {
      const logger = createLogger(
        parseConfigText(stringify({ log: { level: 'info', format, destination: 'syslog', syslog: { address: `127.0.0.1:${port}` } } }), 'syslog.yaml'),
      );
      logger.child({ module: 'smtp' }).warn({ listener: 'inbound', session: 's1', client: '192.0.2.9', clientName: 'unknown', method: 'PLAIN', user: 'x', reply: '535 5.7.8 Authentication credentials invalid' }, 'auth failed');
      const line = await waitFor(`a ${format} datagram`, () => received.find((m) => (format === 'json' ? m.includes('{') : m.includes('SASL'))));
      // <20>: facility mail (2) * 8 + severity warning (4)
      assert.match(line, /^<20>1 \d{4}-\d\d-\d\dT\S+ \S+ sluice \d+ - - /);
      if (format === 'json') assert.equal(JSON.parse(line.slice(line.indexOf('{'))).client, '192.0.2.9');
      else assert.match(line, / - - sluice\/smtp\[\d+\]: warning: unknown\[192\.0\.2\.9\]: SASL PLAIN authentication failed: 535 5\.7\.8 /);
      await closeLogger(logger);
    }
  });
});

describe('the tracking log', () => {
  it('records deferred attempts with the reason', async (t) => {
    const sink = await startSink(t, { rcptReply: () => '451 4.3.0 Try again later' });
    const sluice = await startTestSluice(t, { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] });
    const id = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], 'Subject: t\r\n\r\nx\r\n');
    await sluice.waitForLog((e) => e.msg === 'delivery' && e.queueId === id);
    const day = new Date(sluice.clock.now()).toISOString().slice(0, 10);
    const lines = (await waitFor('the tracking file', async () => {
      const text = await readFile(join(sluice.dataDir, 'tracking', `tracking-${day}.jsonl`), 'utf8').catch(() => '');
      return text.includes('"deferred"') ? text : undefined;
    }))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const deferred = lines.find((e) => e.event === 'deferred' && e.queueId === id);
    assert.ok(deferred, 'a deferred entry');
    assert.equal(deferred.reply, '451 4.3.0 Try again later');
    assert.deepEqual(deferred.recipients, ['b@example.com']);
    assert.equal(deferred.attempt, 1);
    assert.equal(deferred.relay, `127.0.0.1[127.0.0.1]:${sink.port}`);
  });

  it('keeps retainDays daily files, today included, on the injectable clock', async (t) => {
    const dir = await tempDir(t);
    const clock = new TestClock();
    const logger = createLogger('silent');
    const event = (queueId: string) => ({ event: 'deferred' as const, queueId, sender: 'a@example.net', recipients: ['b@example.com'], reply: '451 4.3.0 later' });
    let tracking = await openTrackingLog({ dir, retainDays: 3, clock, logger });
    const days: string[] = [];
    for (let i = 0; i < 5; i++) {
      days.push(new Date(clock.now()).toISOString().slice(0, 10));
      tracking.record(event(`Q${i}`));
      await tracking.search({ queueId: `Q${i}` }, 1); // waits until written
      clock.advance(DAY);
    }
    await tracking.close();
    const names = async () => (await readdir(dir)).sort();
    // the last write (day 5) kept days 3, 4 and 5
    await waitFor('pruning', async () => ((await names()).length === 3 ? true : undefined));
    assert.deepEqual(await names(), days.slice(2).map((d) => `tracking-${d}.jsonl`));
    // opening prunes too: two days later, only the newest file is within 3 days
    clock.advance(DAY);
    tracking = await openTrackingLog({ dir, retainDays: 3, clock, logger });
    assert.deepEqual(await names(), [`tracking-${days[4]}.jsonl`]);
    assert.deepEqual((await tracking.search({ recipient: 'b@example.com' }, 10)).events.map((e) => e.queueId), ['Q4']);
    await tracking.close();
  });

  it('reads retainDays, else the older maxAge rounded up to days, else 30', () => {
    assert.equal(retainDaysOf({ retainDays: 7, maxAge: 90 * DAY }), 7);
    assert.equal(retainDaysOf({ maxAge: 36 * 3600 * 1000 }), 2);
    assert.equal(retainDaysOf({}), 30);
    const parsed = parseConfigText(stringify({ log: { tracking: { maxAge: '10d' } } }), 'a.yaml');
    assert.equal(retainDaysOf(parsed.log.tracking), 10);
    assert.equal(retainDaysOf(parseConfigText(stringify({ log: { tracking: { retainDays: 5 } } }), 'b.yaml').log.tracking), 5);
  });
});
