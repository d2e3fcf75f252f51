// The management API and the CLI over it (MG-1, MG-4, MG-5): token auth,
// problem JSON errors, queue list with filters, /metrics, /healthz, and
// `sluice queue list` against a running server with exit codes scripts trust.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { deadPort } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { CLI, TEST_TOKEN, spawnSluice, startTestSluice } from '../support/sluice.js';

const run = promisify(execFile);
const auth = { authorization: `Bearer ${TEST_TOKEN}` };

async function deadRouteSluice(t: Parameters<typeof startTestSluice>[0]) {
  const sluice = await startTestSluice(t, { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${await deadPort()}`], tls: 'none' }] });
  await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nx\r\n');
  while (sluice.sluice.delivery.queues()[0]?.status !== 'Retry') await new Promise((resolve) => setTimeout(resolve, 20));
  return { sluice, base: `http://127.0.0.1:${sluice.sluice.management.address.port}` };
}

describe('management API (MG-4)', () => {
  it('answers /healthz to anyone and everything else only with the bearer token, errors as problem JSON', async (t) => {
    const { base } = await deadRouteSluice(t);
    assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
    for (const path of ['/api/v1/queues', '/metrics']) {
      const refused = await fetch(`${base}${path}`, { headers: { authorization: 'Bearer wrong-token-0123456789' } });
      assert.equal(refused.status, 401);
      assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.deepEqual(await refused.json(), { type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'a valid bearer token is required (management.token)' });
    }
    const missing = await fetch(`${base}/api/v1/nothing`, { headers: auth });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { title: string }).title, 'Not Found');
  });

  it('lists queues with their properties and filters them (MG-1, QU-2)', async (t) => {
    const { base } = await deadRouteSluice(t);
    const all = (await (await fetch(`${base}/api/v1/queues`, { headers: auth })).json()) as Array<Record<string, unknown>>;
    const backend = all.find((q) => q.Identity === 'test/backend')!;
    assert.equal(backend.Status, 'Retry');
    assert.equal(backend.MessageCount, 1);
    assert.equal(backend.DeliveryType, 'SmartHostConnectorDelivery');
    assert.match(String(backend.LastError), /ECONNREFUSED/);
    const filtered = (await (await fetch(`${base}/api/v1/queues?filter=${encodeURIComponent('{Status -eq "retry" -and MessageCount -ge 1}')}`, { headers: auth })).json()) as Array<Record<string, unknown>>;
    assert.deepEqual(filtered.map((q) => q.Identity), ['test/backend']);
    const bad = await fetch(`${base}/api/v1/queues?filter=${encodeURIComponent('Status -eq "Retry')}`, { headers: auth });
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { type: 'about:blank', title: 'Bad filter', status: 400, detail: 'unexpected end of input at column 18: unterminated string' });
    const unknownParameter = await fetch(`${base}/api/v1/queues?colour=red`, { headers: auth });
    assert.equal(unknownParameter.status, 400);
  });

  it('exports queue depths and store size for Prometheus (MG-5)', async (t) => {
    const { base } = await deadRouteSluice(t);
    const metrics = await (await fetch(`${base}/metrics`, { headers: auth })).text();
    assert.match(metrics, /^sluice_queue_messages\{queue="test\/backend",delivery_type="SmartHostConnectorDelivery"\} 1$/m);
    assert.match(metrics, /^sluice_store_messages 1$/m);
    assert.match(metrics, /^sluice_store_bytes \d+$/m);
  });
});

describe('sluice queue list (MG-4)', () => {
  it('prints a table or JSON from a running server, with exit codes for bad filters, no server and a wrong token', async (t) => {
    const sluice = await spawnSluice(t, { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${await deadPort()}`], tls: 'none' }] });
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], 'Subject: x\r\n\r\nx\r\n');
    const env = { ...process.env, SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${sluice.managementPort}`, SLUICE_TOKEN: TEST_TOKEN };
    const json = JSON.parse((await run(process.execPath, [CLI, 'queue', 'list', '--json', '--filter', 'MessageCount -gt 0'], { env })).stdout) as Array<{ Identity: string }>;
    assert.deepEqual(json.map((q) => q.Identity), ['test/backend']);
    // the token from the config file when SLUICE_TOKEN is not set
    const human = (await run(process.execPath, [CLI, 'queue', 'list', '--config', sluice.configPath], { env: { ...process.env, SLUICE_MANAGEMENT_URL: env.SLUICE_MANAGEMENT_URL } })).stdout;
    assert.match(human, /^Identity\s+DeliveryType\s+Status\s+MessageCount/);
    assert.match(human, /^test\/backend\s+SmartHostConnectorDelivery\s+\w+\s+1/m);

    const failure = (args: string[], extraEnv: Record<string, string>) =>
      run(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv } }).then(
        () => assert.fail('expected a non-zero exit'),
        (error: { code: number; stderr: string }) => error,
      );
    const bad = await failure(['queue', 'list', '--filter', 'Status -eq'], {});
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Bad filter: unexpected end of input at column 11: expected a value/);
    const wrongToken = await failure(['queue', 'list'], { SLUICE_TOKEN: 'not-the-token-0123456789' });
    assert.equal(wrongToken.code, 4);
    const noServer = await failure(['queue', 'list'], { SLUICE_MANAGEMENT_URL: `http://127.0.0.1:${await deadPort()}` });
    assert.equal(noServer.code, 3);
    assert.match(noServer.stderr, /no Sluice server answers at .* \(ECONNREFUSED\); is it running\?/);
  });
});
