// The `sluice queue|message|listener` commands against a running server
// process (MG-4, SPEC §8): tables by default, --json for scripts, files for
// export, exit codes scripts can trust, and a listener suspension that
// survives a restart (IN-7).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitUntil } from '../support/clock.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, TEST_TOKEN, spawnSluice, type SluiceProcess } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const execute = promisify(execFile);

function cli(sluice: SluiceProcess) {
  const env = { ...process.env, SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${sluice.managementPort}`, SLUICE_TOKEN: TEST_TOKEN };
  const run = async (...args: string[]) => (await execute(process.execPath, [CLI, ...args], { env })).stdout;
  const json = async <T = Record<string, unknown>>(...args: string[]) => JSON.parse(await run(...args, '--json')) as T;
  const fails = (...args: string[]) =>
    execute(process.execPath, [CLI, ...args], { env }).then(
      () => assert.fail(`expected sluice ${args.join(' ')} to fail`),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
  return { run, json, fails };
}

const body = (subject: string) => `From: a@example.net\r\nMessage-ID: <${subject}@example.net>\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`;

describe('sluice queue and message commands (MG-2, MG-3, MG-4)', () => {
  it('lists, shows, suspends, exports, removes and tracks messages, and steers the queue', async (t) => {
    const sink = await startSink(t);
    await sink.stop();
    const sluice = await spawnSluice(t, { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] });
    const { run, json, fails } = cli(sluice);
    const kept = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('kept'));
    const dropped = await SmtpClient.submit(sluice.port, 'c@example.net', ['d@example.com'], body('dropped'));
    await waitUntil(async () => (await json<{ messages: unknown[] }>('message', 'list', '--filter', 'Queue -eq backend')).messages.length === 2);

    const table = await run('message', 'list', '--filter', 'FromAddress -eq "a@example.net"');
    assert.match(table, /^Identity\s+Status\s+DateReceived\s+Size\s+FromAddress\s+RecipientCount\s+FirstRecipient\s+Subject\s+LastError$/m);
    assert.match(table, new RegExp(`^test/backend/${kept}\\s+(Ready|Retry)\\s+\\S+\\s+\\d+\\s+a@example\\.net\\s+1\\s+b@example\\.com\\s+kept`, 'm'));
    assert.equal(table.trim().split('\n').length, 2);
    const shown = await run('message', 'show', `test/backend/${kept}`);
    assert.match(shown, /^InternetMessageId\s+<kept@example\.net>$/m);
    assert.match(shown, /^MessageSourceName\s+inbound$/m);
    assert.match(shown, /^Recipients$/m);
    assert.match(shown, /^\s+b@example\.com\s+Ready$/m, 'the recipient waits');

    assert.deepEqual(await json('message', 'suspend', kept), { Suspended: 1, PendingSuspend: 0 });
    const dir = await tempDir(t);
    assert.equal((await run('message', 'export', kept, '--out', join(dir, 'one.eml'))).trim(), join(dir, 'one.eml'));
    const one = await readFile(join(dir, 'one.eml'), 'latin1');
    assert.match(one, /^X-Sender: <a@example\.net>\r\nX-Receiver: <b@example\.com>\r\nReceived: /);
    assert.ok(one.endsWith(`\r\n${body('kept')}`));
    const many = await json<{ files: string[] }>('message', 'export', '--filter', 'Queue -eq backend', '--out', join(dir, 'all'));
    assert.deepEqual(many.files.map((f) => f.slice(dirname(f).length + 1)).sort(), [`${kept}.eml`, `${dropped}.eml`].sort());
    assert.deepEqual((await readdir(join(dir, 'all'))).sort(), [`${dropped}.eml`, `${kept}.eml`].sort(), 'no partial files left behind');

    assert.match(await run('message', 'remove', '--filter', 'FromAddress -eq "c@example.net"'), /^Removed\s+PendingRemove\n1\s+0$/m);
    const missing = await fails('message', 'show', 'NOSUCHID');
    assert.equal(missing.code, 5);
    assert.match(missing.stderr, /^sluice: Not Found: no message NOSUCHID$/m);
    assert.equal((await fails('message', 'suspend', kept)).code, 6, 'already suspended: the action does not apply');
    const neither = await fails('message', 'suspend');
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /give an identity or a filter/);
    assert.equal((await fails('message', 'track')).code, 2);

    const events = await json<{ events: Array<{ event: string }> }>('message', 'track', '--sender', 'C@EXAMPLE.NET');
    assert.deepEqual(events.events.map((e) => e.event), ['received', 'routed', 'removed']);
    assert.match(await run('message', 'track', '--message-id', '<kept@example.net>'), new RegExp(`^\\S+\\s+suspended\\s+${kept}\\s+a@example\\.net\\s+b@example\\.com\\s+backend`, 'm'));

    assert.match(await run('queue', 'suspend', 'test/backend'), /^test\/backend\s+suspend$/m);
    assert.match(await run('queue', 'list', '--filter', 'Status -eq Suspended'), /^test\/backend\s+SmartHostConnectorDelivery\s+Suspended\s+1/m);
    await run('queue', 'resume', 'backend');
    await run('message', 'resume', kept);
    await sink.restart();
    assert.deepEqual(await json('queue', 'retry', 'backend'), { queues: [{ Identity: 'test/backend', Action: 'retry', Messages: 0 }] });
    const [delivered] = await sink.waitFor(1);
    assert.deepEqual(delivered!.to, ['b@example.com']);
    assert.deepEqual(await json('queue', 'retry', 'backend', '--resubmit'), { queues: [{ Identity: 'test/backend', Action: 'resubmit', Messages: 0 }] });
    assert.equal((await fails('queue', 'retry', 'test/Submission', '--resubmit')).code, 6);
  });
});

describe('sluice listener commands (IN-7)', () => {
  it('suspends a listener so that it answers 421 4.3.2, keeps it suspended across a restart, and resumes it', async (t) => {
    const dir = await tempDir(t);
    const first = await spawnSluice(t, {}, dir);
    assert.match(await cli(first).run('listener', 'suspend', 'inbound'), /^inbound\s+127\.0\.0\.1:\d+\s+Suspended$/m);
    assert.equal((await cli(first).fails('listener', 'suspend', 'outbound')).code, 5);
    assert.equal(await first.stop(), 0);

    const second = await spawnSluice(t, {}, dir);
    assert.deepEqual(await cli(second).json('listener', 'list'), [{ Name: 'inbound', Address: `127.0.0.1:${second.port}`, Status: 'Suspended' }]);
    const refused = await SmtpClient.connect(second.port);
    assert.match((await refused.reply()).text, /^421 4\.3\.2 /);
    await cli(second).run('listener', 'resume', 'inbound');
    (await SmtpClient.open(second.port)).close();
  });
});
