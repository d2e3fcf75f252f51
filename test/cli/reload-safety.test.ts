// What an administrator's habits do to a running Sluice (RT-3): by default a
// saved file waits for SIGHUP; a file emptied while the watch is on is refused
// and the running configuration stays; a certificate renewed at the same path
// is served to new TLS sessions after SIGHUP or `sluice config reload`, with
// no session dropped.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { selfSignedCert } from '../support/certs.js';
import { waitUntil } from '../support/clock.js';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, TEST_TOKEN, spawnSluice } from '../support/sluice.js';

const execute = promisify(execFile);

it('applies a saved file only on SIGHUP by default, and refuses an emptied file when the watch is on', { timeout: 60_000 }, async (t) => {
  const quiet = await spawnSluice(t, {});
  const settled = () => new Promise((resolve) => setTimeout(resolve, 1500));
  const running = parse(await readFile(quiet.configPath, 'utf8')) as Record<string, unknown>;
  await writeFile(quiet.configPath, stringify({ ...running, acceptedDomains: ['example.com', 'extra.test'], log: { ...(running.log as object), format: 'text' } }));
  await settled();
  assert.equal(quiet.logLines.filter((l) => l.includes('"configuration reloaded"')).length, 0, 'no reload without SIGHUP');
  quiet.child.kill('SIGHUP');
  await waitUntil(() => quiet.logLines.some((l) => l.includes('"configuration reloaded"')));
  assert.ok(quiet.logLines.some((l) => l.includes('change only with a restart') && l.includes('log.format')), 'the log format waits for a restart');

  const watched = await spawnSluice(t, { config: { watch: true } });
  await waitUntil(() => watched.logLines.some((l) => l.includes('"sluice started"'))); // the watch is on from here
  await truncate(watched.configPath, 0);
  await waitUntil(() => watched.logLines.some((l) => l.includes('configuration reload refused') && l.includes('the file is empty')));
  const client = await SmtpClient.open(watched.port);
  assert.equal((await client.send('a@example.net', ['b@example.com'], 'Subject: still here\r\n\r\nx\r\n')).code, 250, 'the production listener still takes mail');
  client.close();
  assert.equal(watched.child.exitCode, null);
});

it('serves a certificate renewed at the same path to new TLS sessions after SIGHUP and config reload, without dropping a session', { timeout: 60_000 }, async (t) => {
  const tls = await selfSignedCert(t);
  const sluice = await spawnSluice(t, { listeners: [{ name: 'inbound', listen: '127.0.0.1:0', tls }] });
  const fingerprintOfFile = (path: string) =>
    execFileSync('openssl', ['x509', '-in', path, '-noout', '-fingerprint', '-sha256']).toString().split('=')[1]!.trim();
  const served = async () => {
    const client = await SmtpClient.open(sluice.port);
    await client.startTls();
    return { client, fingerprint: client.peerCertificate().fingerprint256 };
  };
  const before = await served();
  assert.equal(before.fingerprint, fingerprintOfFile(tls.cert));

  const renew = async () => {
    const fresh = await selfSignedCert(t);
    await writeFile(tls.cert, await readFile(fresh.cert));
    await writeFile(tls.key, await readFile(fresh.key));
    return fingerprintOfFile(tls.cert);
  };
  const env = { ...process.env, SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${sluice.managementPort}`, SLUICE_TOKEN: TEST_TOKEN };
  const second = await renew();
  const plan = JSON.parse((await execute(process.execPath, [CLI, 'config', 'reload', '--json'], { env })).stdout) as { Listeners: unknown[] };
  assert.deepEqual(plan.Listeners, [{ Name: 'inbound', Change: 'certificate renewed' }]);
  assert.equal((await served()).fingerprint, second);

  const third = await renew();
  sluice.child.kill('SIGHUP');
  await waitUntil(() => sluice.logLines.filter((l) => l.includes('"certificate reloaded"')).length === 2);
  assert.equal((await served()).fingerprint, third);

  // the first session, opened with the first certificate, goes on
  assert.equal((await before.client.send('a@example.net', ['b@example.com'], 'Subject: over the old TLS\r\n\r\nx\r\n')).code, 250);
});
