// A damaged queue database stops Sluice with a message that names the file and
// what to do, and is never replaced by an empty one; `sluice store check` finds
// what is wrong offline, and `sluice store backup` takes a consistent copy while
// the server takes mail (ST-2, ST-3).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, open, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import Sqlite from 'better-sqlite3';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, TEST_TOKEN, spawnSluice } from '../support/sluice.js';
import { deadPort } from '../support/sink.js';
import { tempDir } from '../support/temp.js';

const execute = promisify(execFile);

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sluiceCommand(...args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const body = (i: number) => `Subject: held ${i}\r\n\r\n${`line ${i} of a message that takes some room\r\n`.repeat(1500)}`;

/** A stopped Sluice whose store holds `count` messages waiting for a next hop that is down. */
async function storeWithMail(t: Parameters<typeof tempDir>[0], count: number) {
  const dir = await tempDir(t);
  const config = { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${await deadPort()}`], tls: 'none' }] };
  const sluice = await spawnSluice(t, config, dir);
  for (let i = 0; i < count; i++) await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(i));
  SmtpClient.closeAll();
  assert.equal(await sluice.stop(), 0);
  return { dir, config, configPath: join(dir, 'sluice.yaml'), database: join(dir, 'data', 'queue.db') };
}

describe('a damaged queue store', () => {
  for (const [damage, harm] of [
    ['truncated to half', (path: string, size: number) => truncate(path, Math.floor(size / 2))],
    ['truncated to zero bytes', (path: string) => truncate(path, 0)],
    [
      'overwritten in the middle',
      async (path: string, size: number) => {
        const file = await open(path, 'r+');
        await file.write(Buffer.alloc(16 * 4096, 0x5a), 0, 16 * 4096, Math.floor(size / 4096 / 2) * 4096);
        await file.close();
      },
    ],
  ] as const) {
    it(`stops Sluice at start when the file is ${damage}, naming the file, and leaves the file as it was`, async (t) => {
      const { configPath, database } = await storeWithMail(t, 40);
      const { size } = await stat(database);
      assert.ok(size > 100 * 4096, `a store of some size (${size})`);
      await harm(database, size);
      const damagedSize = (await stat(database)).size;
      const started = await sluiceCommand('start', '--config', configPath);
      assert.notEqual(started.code, 0, 'Sluice must not run on a damaged store');
      assert.match(started.stderr, /queue store .*queue\.db is damaged/);
      assert.match(started.stderr, /sluice store check/);
      assert.equal((await stat(database)).size, damagedSize, 'the damaged file is kept for recovery, never replaced');
      const check = await sluiceCommand('store', 'check', '--config', configPath);
      assert.equal(check.code, 1);
      assert.match(check.stdout, /^DAMAGED: /m);
    });
  }

  it('checks a whole store as OK, and backs it up while the server takes mail; the copy starts as a store with that mail', async (t) => {
    const { dir, config, configPath } = await storeWithMail(t, 5);
    assert.match((await sluiceCommand('store', 'check', '--config', configPath)).stdout, /^OK: /);
    const sluice = await spawnSluice(t, config, dir);
    let sending = true;
    let sent = 0;
    const load = (async () => {
      for (let i = 100; sending && i < 2100; i++) {
        await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], `Subject: during ${i}\r\n\r\nx\r\n`);
        sent++;
      }
    })();
    while (sent < 20) await new Promise((resolve) => setTimeout(resolve, 10));
    const acknowledgedBefore = 5 + sent;
    const copy = join(dir, 'copy.db');
    const backup = await execute(process.execPath, [CLI, 'store', 'backup', copy, '--config', configPath]);
    assert.match(backup.stdout, /^OK: .* copied to /);
    sending = false;
    await load;
    const db = new Sqlite(copy, { readonly: true });
    const problems = db.pragma('integrity_check', { simple: true });
    const messages = (db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
    db.close();
    assert.equal(problems, 'ok');
    assert.ok(messages >= acknowledgedBefore, `the copy holds every message acknowledged before it began (${messages} >= ${acknowledgedBefore})`);

    // the copy is a store Sluice starts on, with the held mail in its queue
    const restored = await tempDir(t);
    await mkdir(join(restored, 'data'), { recursive: true });
    await copyFile(copy, join(restored, 'data', 'queue.db'));
    const second = await spawnSluice(t, config, restored);
    const queued = await execute(process.execPath, [CLI, 'message', 'list', '--json'], {
      env: { ...process.env, SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${second.managementPort}`, SLUICE_TOKEN: TEST_TOKEN },
    });
    assert.ok((JSON.parse(queued.stdout) as { messages: unknown[] }).messages.length >= acknowledgedBefore);
  });

  it('refuses to back up onto something that is not a regular file', async (t) => {
    const { configPath, dir } = await storeWithMail(t, 1);
    const refused = await sluiceCommand('store', 'backup', dir, '--config', configPath);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /not a regular file/);
  });
});
