// Reloading a running server (RT-3, SPEC §8): `sluice config check --diff`
// shows what a candidate file would move before anything moves; a broken file
// (by SIGHUP) is refused and the process runs on; a changed file is picked up
// by the watch; `sluice config reload` and SIGHUP reload on request.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { waitUntil } from '../support/clock.js';
import { deadPort, startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, TEST_TOKEN, spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const execute = promisify(execFile);

it('shows a reload plan, refuses a broken file, and reloads on a file change, on SIGHUP and on request', { timeout: 60_000 }, async (t) => {
  const sink = await startSink(t);
  const sluice = await spawnSluice(t, { config: { watch: true }, routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${await deadPort()}`], tls: 'none' }] });
  const env = { ...process.env, SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${sluice.managementPort}`, SLUICE_TOKEN: TEST_TOKEN };
  const run = async (...args: string[]) => (await execute(process.execPath, [CLI, ...args], { env })).stdout;
  const logged = (text: string) => sluice.logLines.filter((line) => line.includes(text)).length;
  await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], 'Subject: moved\r\n\r\nbody\r\n');
  await waitUntil(async () => (await run('queue', 'list', '--filter', 'Status -eq Retry')).includes('test/backend'));

  const running = parse(await readFile(sluice.configPath, 'utf8')) as Record<string, unknown>;
  const replaced = { ...running, routes: [{ name: 'replacement', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }] };
  const candidate = join(await tempDir(t), 'candidate.yaml');
  await writeFile(candidate, stringify(replaced));
  const diff = await run('config', 'check', '--diff', '--config', candidate);
  assert.match(diff, /^OK: .*candidate\.yaml$/m);
  assert.match(diff, /^test\/backend\s+resubmit\s+1\s+test\/replacement: 1\s+route backend was removed$/m);
  assert.match(diff, /^Listeners: no change$/m);
  assert.match(diff, /^replacement\s+added$/m);
  assert.match(diff, /^backend\s+removed$/m);
  assert.equal(sink.messages.length, 0, 'a diff moves nothing');

  await writeFile(sluice.configPath, 'routes: [\n');
  sluice.child.kill('SIGHUP');
  await waitUntil(() => logged('configuration reload refused') > 0);
  assert.equal(sluice.child.exitCode, null, 'still running');

  await writeFile(sluice.configPath, stringify(replaced));
  await sink.waitFor(1); // the watch saw the change and the queue was rerouted
  await waitUntil(() => logged('"configuration reloaded"') === 1);

  sluice.child.kill('SIGHUP');
  await waitUntil(() => logged('"configuration reloaded"') === 2);
  const plan = JSON.parse(await run('config', 'reload', '--json')) as { Queues: unknown[]; Listeners: unknown[]; RestartNeeded: string[] };
  assert.deepEqual(plan, { Queues: [], Listeners: [], Routes: [], RestartNeeded: [] });
  assert.equal(sluice.child.exitCode, null);
});
