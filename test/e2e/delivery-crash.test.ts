// kill -9 in the middle of deliveries (DL-1, ST-3): after a restart every
// accepted message reaches the next hop; one that was being delivered when the
// process died is delivered again (at least once), none is lost.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startSink, type SinkOptions } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const COUNT = 12;

it('delivers everything after kill -9 during delivery, at least once', { timeout: 120_000 }, async (t) => {
  const sinkOptions: SinkOptions = { dataDelayMs: 1500 };
  const sink = await startSink(t, sinkOptions);
  const dir = await tempDir(t);
  const config = { routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none', maxConnections: 3 }] };
  const first = await spawnSluice(t, config, dir);
  const subjects = Array.from({ length: COUNT }, (_, i) => `crash delivery ${i}`);
  for (const subject of subjects) await SmtpClient.submit(first.port, 'a@example.net', ['b@example.com'], `Subject: ${subject}\r\n\r\nbody\r\n`);
  await sink.waitFor(1); // a message is on the wire, its reply held back by the slow sink
  await first.kill9();

  sinkOptions.dataDelayMs = 0;
  await spawnSluice(t, config, dir);
  const deadline = Date.now() + 60_000;
  const seen = () => new Set(sink.messages.map((m) => /Subject: (.*)\r\n/.exec(m.body.toString())![1]));
  while (seen().size < COUNT) {
    assert.ok(Date.now() < deadline, `only ${seen().size} of ${COUNT} delivered`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual([...seen()].sort(), [...subjects].sort());
  assert.ok(sink.messages.length >= COUNT);
});
