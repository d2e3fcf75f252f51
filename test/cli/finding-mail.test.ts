// Finding and reading mail with the real CLI against a spawned Sluice (issue 14;
// MG-1, MG-3, MG-4, QU-3): -or, -not, parentheses, -notlike and Recipients
// filters return exactly the right messages; an unknown status is refused with
// the known ones; the list shows recipients and the RFC 2047 subject decoded;
// show --headers/--body print the stored message; export to -, /dev/stdout
// (which stays a symbolic link), a FIFO, and --force; --dry-run changes
// nothing; a remove on a terminal asks first; JSON errors on stderr; the
// OpenAPI document has response schemas.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { lstat, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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
  const options = { env, timeout: 20_000, encoding: 'buffer' as const, maxBuffer: 16 * 1024 * 1024 };
  const bytes = async (...args: string[]) => (await execute(process.execPath, [CLI, ...args], options)).stdout;
  const run = async (...args: string[]) => (await bytes(...args)).toString('utf8');
  const json = async <T = Record<string, unknown>>(...args: string[]) => JSON.parse(await run(...args, '--json')) as T;
  const fails = (...args: string[]) =>
    execute(process.execPath, [CLI, ...args], options).then(
      () => assert.fail(`expected sluice ${args.join(' ')} to fail`),
      (error: { code: number; stdout: Buffer; stderr: Buffer }) => ({ code: error.code, stdout: error.stdout.toString(), stderr: error.stderr.toString() }),
    );
  /** Runs the CLI with a terminal as its stdin (through script(1)), typing `input`. */
  const onTerminal = (input: string, ...args: string[]) =>
    new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const child = spawn('script', ['-qefc', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      // answer once the question is on the terminal
      const answer = setInterval(() => {
        if (/\[y\/N\]/.test(output)) {
          clearInterval(answer);
          child.stdin.write(input);
        }
      }, 50);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        clearInterval(answer);
        resolve({ code, output });
      });
    });
  return { bytes, run, json, fails, onTerminal };
}

const message = (subject: string, text = 'Hello.') => `From: a@example.net\r\nMessage-ID: <${text.length}.${Date.now()}@example.net>\r\nSubject: ${subject}\r\n\r\n${text}\r\n`;
// "Grüße aus Köln" as an RFC 2047 B word
const ENCODED = `=?UTF-8?B?${Buffer.from('Grüße aus Köln').toString('base64')}?=`;

interface Listed {
  messages: Array<{ Identity: string; Subject: string | null; Recipients: Array<{ Address: string }> }>;
  truncated: boolean;
}

describe('finding and reading mail (issue 14: MG-1, MG-3, MG-4, QU-3)', () => {
  it('filters with -or, -not, parentheses, -notlike and Recipients; lists and shows; exports safely; dry-runs; asks before a remove', async (t) => {
    const sink = await startSink(t);
    await sink.stop();
    const sluice = await spawnSluice(t, { routes: [{ name: 'backend', match: ['example.com', 'example.org'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] });
    const { bytes, run, json, fails, onTerminal } = cli(sluice);
    const m1 = await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com', 'c@example.org'], message(ENCODED, 'first'));
    const m2 = await SmtpClient.submit(sluice.port, 'x@example.net', ['d@example.com'], message('plain', 'second!'));
    const m3 = await SmtpClient.submit(sluice.port, 'a@example.net', ['e@example.com'], message('third', 'third!!!'));
    await waitUntil(async () => (await json<Listed>('message', 'list', '--filter', 'Queue -eq backend')).messages.length === 3);
    const ids = async (filter: string) => (await json<Listed>('message', 'list', '--filter', filter)).messages.map((m) => m.Identity.split('/').pop()).sort();

    // filters (MG-1): exactly the right messages
    assert.deepEqual(await ids('Recipients -eq "C@EXAMPLE.ORG"'), [m1]);
    assert.deepEqual(await ids('Recipients -like "d*"'), [m2]);
    assert.deepEqual(await ids('Recipients -like "*@example.com"'), [m1, m2, m3].sort());
    assert.deepEqual(await ids('{FromAddress -eq "a@example.net" -and -not (Recipients -like "e@*")}'), [m1]);
    assert.deepEqual(await ids('(Recipients -eq d@example.com -or Recipients -eq e@example.com) -and Queue -eq test/backend'), [m2, m3].sort());
    assert.deepEqual(await ids('FromAddress -notlike "a@*"'), [m2]);
    assert.deepEqual(await ids('-not Recipients -like "*.org" -and Subject -notlike "pl*"'), [m3]);
    assert.deepEqual(await ids('Subject -like "Grüße*"'), [m1], 'the stored Subject is decoded, so a filter sees what the list shows');
    assert.deepEqual(await ids('Status -eq ready -or Status -eq retry'), [m1, m2, m3].sort());

    // an unknown status is refused with the known ones, at its column; with --json the error is JSON on stderr
    const unknown = await fails('message', 'list', '--filter', 'Status -eq Frozen', '--json');
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '', 'nothing but JSON on stdout, and no JSON answer here');
    assert.deepEqual(JSON.parse(unknown.stderr), {
      title: 'Bad filter',
      status: 400,
      detail: 'bad value "Frozen" at column 12: unknown status (known: Active, Ready, Retry, Suspended, PendingSuspend, PendingRemove)',
      exitCode: 2,
    });
    const text = await fails('message', 'list', '--filter', 'Status -eq Frozen');
    assert.match(text.stderr, /^sluice: Bad filter: bad value "Frozen" at column 12: unknown status \(known: Active, Ready, Retry/m);
    const missing = await fails('message', 'show', 'NOSUCHID', '--json');
    assert.deepEqual(JSON.parse(missing.stderr), { title: 'Not Found', status: 404, detail: 'no message NOSUCHID', exitCode: 5 });
    assert.deepEqual(JSON.parse((await fails('message', 'export', '--out', '-', '--json')).stderr), { title: 'Bad Request', detail: 'give an identity or --filter', exitCode: 2 });
    assert.match((await fails('message', 'list', '--filter', 'Recipients -ne x@example.com')).stderr, /Recipients takes -eq and -like/);

    // the list: recipient count, first recipient, decoded subject
    const table = await run('message', 'list', '--filter', `Id -eq ${m1}`);
    assert.match(table, /^Identity\s+Status\s+DateReceived\s+Size\s+FromAddress\s+RecipientCount\s+FirstRecipient\s+Subject\s+LastError$/m);
    assert.match(table, new RegExp(`^test/backend/${m1}\\s+(Ready|Retry)\\s+\\S+\\s+\\d+\\s+a@example\\.net\\s+2\\s+b@example\\.com\\s+Grüße aus Köln`, 'm'));
    assert.equal((await json<Listed>('message', 'list', m1)).messages[0]!.Subject, 'Grüße aus Köln');
    assert.match(await run('message', 'show', m1), /^Subject\s+Grüße aus Köln$/m);

    // show --headers / --body: the stored message, as postcat -q prints it
    const whole = await bytes('message', 'show', m1, '--body');
    assert.match(whole.toString('latin1'), new RegExp(`^Received: from \\S+ .*\\r\\n(\\s.*\\r\\n)*`));
    const headers = await bytes('message', 'show', m1, '--headers');
    assert.ok(headers.toString('latin1').endsWith(`Subject: ${ENCODED}\r\n\r\n`), 'the header section, up to its empty line, undecoded');
    assert.deepEqual(headers, whole.subarray(0, headers.length));
    assert.ok(whole.subarray(headers.length).toString() === 'first\r\n');
    assert.equal((await fails('message', 'show', m1, '--headers', '--body')).code, 2);

    // export to - and to /dev/stdout: the bytes of the replay format on stdout, and /dev/stdout is still a link
    const toDash = await bytes('message', 'export', m1, '--out', '-');
    assert.deepEqual(toDash, Buffer.concat([Buffer.from('X-Sender: <a@example.net>\r\nX-Receiver: <b@example.com>\r\nX-Receiver: <c@example.org>\r\n'), whole]));
    const linkBefore = await lstat('/dev/stdout');
    assert.deepEqual(await bytes('message', 'export', m1, '--out', '/dev/stdout'), toDash);
    const linkAfter = await lstat('/dev/stdout');
    assert.ok(linkAfter.isSymbolicLink(), '/dev/stdout is still a symbolic link');
    assert.equal(linkAfter.ino, linkBefore.ino);
    assert.equal((await fails('message', 'export', '--filter', 'Queue -eq backend', '--out', '-')).code, 2);

    // a regular file is replaced only with --force; a FIFO is written in place
    const dir = await tempDir(t);
    const file = join(dir, 'kept.eml');
    await writeFile(file, 'precious');
    const refused = await fails('message', 'export', m1, '--out', file);
    assert.equal(refused.code, 6);
    assert.match(refused.stderr, /kept\.eml exists; use --force to replace it/);
    assert.equal(await readFile(file, 'utf8'), 'precious');
    assert.equal((await run('message', 'export', m1, '--out', file, '--force')).trim(), file);
    assert.deepEqual(await readFile(file), toDash);
    const fifo = join(dir, 'pipe');
    await execute('mkfifo', [fifo]);
    const reader = readFile(fifo);
    assert.equal((await run('message', 'export', m1, '--out', fifo)).trim(), fifo);
    assert.deepEqual(await reader, toDash);
    assert.ok((await stat(fifo)).isFIFO(), 'the FIFO is still a FIFO');
    const all = join(dir, 'all');
    await json('message', 'export', '--filter', 'Queue -eq backend', '--out', all);
    assert.match((await fails('message', 'export', '--filter', 'Queue -eq backend', '--out', all)).stderr, /exists; use --force/);
    assert.equal((await json<{ files: string[] }>('message', 'export', '--filter', 'Queue -eq backend', '--out', all, '--force')).files.length, 3);

    // --dry-run lists what would be done and changes nothing
    const before = await json<Listed>('message', 'list');
    const dry = await json<{ dryRun: boolean; action: string; messages: Array<{ Identity: string }>; truncated: boolean }>(
      'message', 'remove', '--filter', 'FromAddress -eq a@example.net', '--dry-run',
    );
    assert.equal(dry.dryRun, true);
    assert.equal(dry.action, 'remove');
    assert.deepEqual(dry.messages.map((m) => m.Identity.split('/').pop()).sort(), [m1, m3].sort());
    assert.match(await run('message', 'suspend', '--filter', 'Recipients -eq d@example.com', '--dry-run'), new RegExp(`^Would suspend 1 message entry; nothing was changed\\.\\n[^]*^test/backend/${m2}\\s`, 'm'));
    assert.deepEqual((await json('queue', 'suspend', 'backend', '--dry-run')), { dryRun: true, queues: [{ Identity: 'test/backend', Action: 'suspend' }] });
    assert.deepEqual((await json('queue', 'retry', '--filter', 'NextHopConnector -eq backend', '--dry-run')), { dryRun: true, queues: [{ Identity: 'test/backend', Action: 'retry' }] });
    assert.deepEqual(await json<Listed>('message', 'list'), before, 'nothing changed');
    assert.notEqual((await json<Array<{ Status: string }>>('queue', 'list', '--filter', 'Identity -eq test/backend'))[0]!.Status, 'Suspended');

    // a remove of more than one message on a terminal asks; "n" removes nothing, --yes does not ask
    const declined = await onTerminal('n\n', 'message', 'remove', '--filter', 'FromAddress -eq a@example.net');
    assert.match(declined.output, /Remove 2 messages\? \[y\/N\]/);
    assert.match(declined.output, /nothing removed/);
    assert.notEqual(declined.code, 0);
    assert.equal((await json<Listed>('message', 'list')).messages.length, 3);
    const one = await onTerminal('', 'message', 'remove', m2);
    assert.equal(one.code, 0, `one message: no question (${one.output})`);
    assert.doesNotMatch(one.output, /\[y\/N\]/);
    const yes = await onTerminal('', 'message', 'remove', '--filter', 'FromAddress -eq a@example.net', '--yes');
    assert.equal(yes.code, 0);
    assert.match(yes.output, /Removed\s+PendingRemove\r?\n2\s+0/);
    assert.deepEqual((await json<Listed>('message', 'list')).messages, []);
  });

  it('describes every answer in the OpenAPI document, errors as problem JSON (MG-4)', async (t) => {
    const sluice = await spawnSluice(t, {});
    const response = await fetch(`http://127.0.0.1:${sluice.managementPort}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    const document = (await response.json()) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }> }>> };
    const schemaOf = (path: string, method: string, status: string, type = 'application/json') => document.paths[path]?.[method]?.responses[status]?.content?.[type]?.schema;
    const list = schemaOf('/api/v1/messages', 'get', '200') as { properties: { messages: { items: { properties: Record<string, unknown> } } } };
    assert.ok(list.properties.messages.items.properties.Recipients);
    assert.ok(list.properties.messages.items.properties.Subject);
    assert.ok((schemaOf('/api/v1/messages/{action}', 'post', '200') as { oneOf: unknown[] }).oneOf.length >= 4, 'each action answer and the dry run');
    assert.ok(schemaOf('/api/v1/queues/{action}', 'post', '200'));
    assert.ok(schemaOf('/api/v1/queues', 'get', '200'));
    assert.ok(schemaOf('/api/v1/listeners', 'get', '200'));
    assert.ok(schemaOf('/api/v1/tracking', 'get', '200'));
    assert.ok(schemaOf('/api/v1/messages/content', 'get', '200', 'message/rfc822'));
    for (const [path, method] of [['/api/v1/messages', 'get'], ['/api/v1/messages/{action}', 'post'], ['/api/v1/queues', 'get']] as const) {
      const problem = schemaOf(path, method, '4XX') as { required: string[] } | undefined;
      assert.deepEqual(problem?.required, ['type', 'title', 'status', 'detail'], `${method} ${path}: problem JSON for 4xx`);
    }
  });
});
