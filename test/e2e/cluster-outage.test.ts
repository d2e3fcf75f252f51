// The PostgreSQL queue store when the database goes away (ST-1, IN-2, ST-5):
// under load, the test's own backend connections are terminated, then the
// database is made unreachable for a while (a TCP proxy of the test stops);
// meanwhile intake answers 451 4.3.0, nothing acknowledged is lost, and
// delivery resumes by itself. And an idle cluster costs about one query per
// node per second (LISTEN/NOTIFY instead of polling).
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { it } from 'node:test';
import { systemClock } from '../../src/clock.js';
import pg from 'pg';
import { settle, waitUntil } from '../support/clock.js';
import { listenAgain, listenOnStablePort } from '../support/ports.js';
import { startSink } from '../support/sink.js';
import { SmtpClient } from '../support/smtp-client.js';
import { spawnSluice, startTestSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';
import { NO_PG, PG_URL, schemaFor } from '../store/postgres-support.js';

/** A TCP proxy to the database that the test can take down (refusing connections, cutting those open) and bring back. */
async function startProxy(t: { after(fn: () => unknown): void }) {
  const target = new URL(PG_URL!);
  const sockets = new Set<Socket>();
  let server: Server;
  const create = () =>
    createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  server = create();
  const port = await listenOnStablePort(server, '127.0.0.1');
  const down = async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  };
  t.after(down);
  return {
    port,
    down,
    async up() {
      server = create();
      await listenAgain(server, port, '127.0.0.1');
    },
  };
}

function urlVia(port: number, tag: string): string {
  const url = new URL(PG_URL!);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  url.searchParams.set('application_name', `sluice_test_${tag}_${process.pid}`);
  return url.toString();
}

it('database connections killed, then the database unreachable, under load: 451 meanwhile, nothing acknowledged lost, delivery resumes', { skip: NO_PG, timeout: 60_000 }, async (t) => {
  const sink = await startSink(t);
  const proxy = await startProxy(t);
  const tag = 'outage';
  const url = urlVia(proxy.port, tag);
  const schema = schemaFor(await tempDir(t));
  const node = await spawnSluice(t, {
    node: 'o1',
    storage: { backend: 'postgres', leaseTimeout: '3s', postgres: { url, schema, poolSize: 4 } },
    routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
  });
  if (process.env.SLUICE_TEST_DEBUG) node.child.stderr!.on('data', (d: Buffer) => process.stdout.write(`STDERR ${d.toString()}`));
  const acknowledged = new Set<string>();
  const refusals: string[] = [];
  let stop = false;
  let n = 0;
  async function sender(): Promise<void> {
    while (!stop && n < 2_000) {
      const i = n++;
      try {
        const client = await SmtpClient.open(node.port);
        try {
          const reply = await client.send('a@example.net', [`r${i}@example.com`], `Subject: m${i}\r\n\r\nbody ${i}\r\n`);
          if (reply.code === 250) acknowledged.add(`m${i}`);
          else refusals.push(`${reply.code} ${reply.text}`);
        } finally {
          client.close();
        }
      } catch (error) {
        refusals.push(String(error));
      }
    }
  }
  const sending = Promise.all(Array.from({ length: 6 }, sender));
  await waitUntil(() => sink.messages.length >= 100, 20_000);
  // 1: every connection of this test's Sluice is terminated by the server (only ours, by application_name)
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [
      `sluice_test_${tag}_${process.pid}`,
    ]);
    assert.ok((rowCount ?? 0) > 0, 'the test terminated its own connections');
  } finally {
    await admin.end();
  }
  await settle(1000);
  // 2: the database unreachable for 3 s
  await proxy.down();
  const refusedBefore = refusals.length;
  await settle(3000);
  const refusedDuring = refusals.slice(refusedBefore);
  await proxy.up();
  await settle(1500);
  stop = true;
  await sending;
  if (process.env.SLUICE_TEST_DEBUG) console.log(node.logLines.slice(-30).join('\n'), node.child.exitCode);
  assert.ok(refusedDuring.length > 0, 'mail was refused while the database was unreachable');
  assert.ok(refusedDuring.some((r) => r.startsWith('451') && r.includes('4.3.0')), `451 4.3.0 while unreachable: ${refusedDuring.slice(0, 3).join(' | ')}`);
  // delivery resumes by itself: everything acknowledged arrives
  await waitUntil(() => {
    const delivered = new Set(sink.messages.map((m) => /Subject: (\S+)/.exec(m.body.toString())?.[1]));
    return [...acknowledged].every((s) => delivered.has(s));
  }, 30_000);
  console.log(`# outage: ${acknowledged.size} acknowledged and delivered, ${refusals.length} refused (${refusedDuring.length} while unreachable), ${sink.messages.length} delivered`);
});

it('an idle cluster issues about one query per node per second (LISTEN/NOTIFY, not polling)', { skip: NO_PG, timeout: 30_000 }, async (t) => {
  const schema = schemaFor(await tempDir(t));
  const url = urlVia(Number(new URL(PG_URL!).port || 5432), 'idle');
  const config = (node: string) => ({ node, storage: { backend: 'postgres', leaseTimeout: '3s', postgres: { url, schema, poolSize: 2 } } });
  const one = await startTestSluice(t, config('i1'), systemClock);
  const two = await startTestSluice(t, config('i2'), systemClock);
  // mail through one node reaches the other's categorizer by NOTIFY; then everything is quiet
  await SmtpClient.submit(one.port, 'a@example.net', ['b@nowhere.test'], 'Subject: x\r\n\r\nx\r\n');
  await waitUntil(async () => (await two.sluice.store.listMessages([], 10)).every((m) => m.queue !== 'Submission'));
  await settle(1000);
  let queries = 0;
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    queries++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  const seconds = 9; // six sweeps of a 3 s lease timeout: one full sweep among them
  try {
    await settle(seconds * 1000);
  } finally {
    pg.Client.prototype.query = original;
  }
  const perNode = queries / 2 / seconds;
  console.log(`# idle: ${queries} queries by 2 nodes in ${seconds} s: ${perNode.toFixed(2)} per node per second (leaseTimeout 3 s)`);
  assert.ok(perNode <= 1.3, `about one query per node per second at most, got ${perNode.toFixed(2)}`);
});
