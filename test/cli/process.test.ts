// Sluice as a process an administrator runs (issue 14): --version, status and
// stop through the data directory's lock, a second server on the same data
// directory refused, file modes, `sluice passwd`, and the CLI finding the
// running server whatever config file or directory it is run from.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { systemClock } from '../../src/clock.js';
import { parseConfigText } from '../../src/config/load.js';
import { startSluice } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('SLUICE_')));

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function sluice(args: string[], options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, env: options.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('sluice as a process', () => {
  it('prints its version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal((await sluice(['--version'])).stdout.trim(), version);
  });

  it('answers a mistake on the command line with exit 2, as one JSON object on stderr with --json', async () => {
    const plain = await sluice(['message', 'list', '--bogus']);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /unknown option '--bogus'/);
    const json = await sluice(['message', 'list', '--bogus', '--json']);
    assert.deepEqual([json.code, json.stdout, JSON.parse(json.stderr)], [2, '', { title: 'Usage', detail: "unknown option '--bogus'", exitCode: 2 }]);
    assert.equal((await sluice(['status', '--help'])).code, 0);
  });

  it('reports status, refuses a second server on the data directory, keeps its files private, and stops', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t);
    const running = await spawnSluice(t, {}, dir);
    await SmtpClient.submit(running.port, 'a@example.net', ['b@example.com'], 'Subject: held\r\n\r\nx\r\n');

    const status = await sluice(['status', '--config', running.configPath]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^Sluice \\S+ is running: pid ${running.child.pid}, node test, up \\d+s$`, 'm'));
    const json = JSON.parse((await sluice(['status', '--config', running.configPath, '--json'])).stdout) as Record<string, unknown>;
    assert.deepEqual([json.running, json.pid, json.managementUrl], [true, running.child.pid, `http://127.0.0.1:${running.managementPort}`]);

    const second = await sluice(['start', '--config', running.configPath]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`another Sluice \\(pid ${running.child.pid}\\) runs on ${running.dataDir}`));

    assert.equal(await mode(running.dataDir), 0o700);
    for (const file of ['queue.db', 'queue.db-wal', 'sluice.pid', 'sluice.json']) assert.equal(await mode(join(running.dataDir, file)), 0o600, file);
    const tracking = join(running.dataDir, 'tracking');
    const [day] = await readdir(tracking);
    assert.equal(await mode(join(tracking, day!)), 0o600, 'tracking log');

    const stopped = await sluice(['stop', '--config', running.configPath]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, new RegExp(`^stopped: pid ${running.child.pid}$`, 'm'));
    assert.equal(await running.exited, 0);
    const after = await sluice(['status', '--config', running.configPath]);
    assert.equal(after.code, 3);
    assert.match(after.stderr, /not running/);
  });

  it('stops cleanly on a SIGTERM that arrives while it is still starting', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t);
    const configPath = join(dir, 'sluice.yaml');
    await writeFile(configPath, stringify({ dataDir: join(dir, 'data'), listeners: [{ name: 'inbound', listen: '127.0.0.1:0' }], management: { listen: '127.0.0.1:0' } }));
    const child = spawn(process.execPath, [CLI, 'start', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
    t.after(() => child.kill('SIGKILL'));
    let output = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout.on('data', (chunk: Buffer) => {
      // the first listener is up; the rest of the start (delivery, management) is still to come
      if (!output.includes('listener started') && (output += chunk.toString()).includes('listener started')) child.kill('SIGTERM');
      else output += chunk.toString();
    });
    assert.equal(await exited, 0);
    assert.match(output, /"sluice stopped"/);
  });

  it('takes over the lock of a server killed with SIGKILL', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t);
    const first = await spawnSluice(t, {}, dir);
    await first.kill9();
    const second = await spawnSluice(t, {}, dir);
    assert.equal((await sluice(['status', '--config', second.configPath])).code, 0);
  });

  it('asks the running server for the diff of a candidate file whose management address differs', { timeout: 60_000 }, async (t) => {
    const running = await spawnSluice(t, {});
    const candidate = join(await tempDir(t), 'candidate.yaml');
    const config = parse(await readFile(running.configPath, 'utf8')) as Record<string, unknown>;
    await writeFile(candidate, stringify({ ...config, management: { ...(config.management as object), listen: '127.0.0.1:9' }, acceptedDomains: ['example.com', 'new.test'] }));
    const diff = await sluice(['config', 'check', '--diff', '--config', candidate]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.match(diff.stdout, /^inbound\s+updated$/m);
  });

  it('prints a password hash that AUTH accepts', { timeout: 60_000 }, async (t) => {
    const hashed = await sluice(['passwd'], { input: 'correct horse\n' });
    assert.equal(hashed.code, 0, hashed.stderr);
    const entry = hashed.stdout.trim();
    assert.match(entry, /^scrypt\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    const server = await spawnSluice(t, { auth: { users: [{ username: 'carol', password: entry }] }, listeners: [{ name: 'inbound', listen: '127.0.0.1:0', allowInsecureAuth: true }] });
    const client = await SmtpClient.open(server.port);
    const plain = (password: string) => Buffer.from(`\0carol\0${password}`).toString('base64');
    assert.equal((await client.command(`AUTH PLAIN ${plain('wrong')}`)).code, 535);
    assert.equal((await client.command(`AUTH PLAIN ${plain('correct horse')}`)).code, 235);
  });

  it('finds a server started without a config file from any directory', { timeout: 60_000 }, async (t) => {
    // the server publishes where it runs in the user's temporary directory: a private one for this test
    const runtime = await tempDir(t);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = runtime;
    t.after(() => (savedTmp === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = savedTmp)));
    const home = await tempDir(t);
    const config = parseConfigText(stringify({ dataDir: join(home, 'sluice-data'), listeners: [{ name: 'inbound', listen: '127.0.0.1:0' }], management: { listen: '127.0.0.1:0' } }), 'test');
    const server = await startSluice(config, { clock: systemClock, logger: createLogger('silent') });
    t.after(() => server.stop());
    const elsewhere = await tempDir(t);
    const listed = await sluice(['queue', 'list', '--json'], { cwd: elsewhere, env: { ...cleanEnv(), TMPDIR: runtime } });
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(Array.isArray(JSON.parse(listed.stdout)));
  });
});
