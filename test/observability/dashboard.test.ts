// The Grafana dashboard and the metrics it reads (issue 14 "Process and packaging", MG-5): every metric name
// in the dashboard's PromQL is in the /metrics of a real Sluice process that has accepted and delivered mail,
// refused a relay and failed an AUTH; and the metrics have the right values in small scenarios on the test
// clock: a queue in Retry, the oldest message's age, sessions open, refusals by reason, outcomes by route.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitUntil } from '../support/clock.js';
import { deadPort, startSink } from '../support/sink.js';
import { spawnSluice, startTestSluice, TEST_TOKEN } from '../support/sluice.js';
import { SmtpClient } from '../support/smtp-client.js';

const DASHBOARD = fileURLToPath(new URL('../../../contrib/grafana/sluice-dashboard.json', import.meta.url));
const DOCS = fileURLToPath(new URL('../../../docs/metrics.md', import.meta.url));
const body = (subject: string) => `Subject: ${subject}\r\nMessage-ID: <${subject}@example.net>\r\n\r\nHello.\r\n`;
const plain = (user: string, password: string) => Buffer.from(`\0${user}\0${password}`).toString('base64');

/** PromQL words that are not metric names. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression reads (functions, labels, strings, ranges and keywords left out). */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
    if (match[1] !== undefined) continue; // a function
    if (KEYWORDS.has(match[0].toLowerCase())) continue;
    if (match.index > 0 && /[\d.$]/.test(bare[match.index - 1]!)) continue; // 1e3, a $variable
    names.add(match[0]);
  }
  return [...names];
}

interface Panel {
  type: string;
  title: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

/** Every PromQL expression of the dashboard: panel targets and the variables' label_values queries. */
async function dashboardQueries(): Promise<{ title: string; expr: string }[]> {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; query?: unknown }> } };
  const queries: { title: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) queries.push({ title: panel.title, expr: target.expr });
      walk(panel.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query?: string } | undefined)?.query;
    const inner = query && /^label_values\((.*),\s*\w+\)$/.exec(query)?.[1];
    if (inner) queries.push({ title: `variable ${variable.name}`, expr: inner });
  }
  return queries;
}

/** Sample lines of an exposition, by metric name. */
function samples(exposition: string): Map<string, string[]> {
  const byName = new Map<string, string[]>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0];
    byName.set(name, [...(byName.get(name) ?? []), line]);
  }
  return byName;
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  assert.equal(response.status, 200);
  return response.text();
}

/** The value of one sample, given its name and labels exactly as exposed (`name{a="b"}`), or undefined. */
function valueOf(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('the Grafana dashboard', () => {
  it('is a Grafana dashboard with a Prometheus data source variable, whose every query reads metrics', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
      title: string;
      schemaVersion: number;
      panels: Array<Panel & { datasource?: { uid: string } }>;
      templating: { list: Array<{ name: string; type: string; query?: unknown }> };
    };
    assert.ok(dashboard.schemaVersion >= 36, 'Grafana 9/10 schema');
    assert.ok(!/\b[A-Z]{2}-\d\b/.test(JSON.stringify(dashboard)), 'no requirement IDs in operator-facing text');
    const source = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.equal(source?.query, 'prometheus');
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      assert.equal(panel.datasource?.uid, `\${${source!.name}}`, `${panel.title} uses the data source variable`);
      assert.ok((panel.targets ?? []).length > 0, `${panel.title} has a query`);
    }
    for (const { title, expr } of await dashboardQueries()) assert.ok(metricNames(expr).length > 0, `${title}: ${expr}`);
    assert.deepEqual(metricNames('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$y"}[$__rate_interval]))) / on (q) b or vector(0)'), ['a_bucket', 'b']);
  });

  it('uses only metrics a real Sluice exposes once it has accepted, delivered, deferred, bounced and refused mail', async (t) => {
    const sink = await startSink(t, {
      rcptReply: (address) => (address.startsWith('later') ? '451 4.2.1 Mailbox busy' : address.startsWith('gone') ? '550 5.1.1 No such user' : undefined),
    });
    const sluice = await spawnSluice(t, {
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', allowInsecureAuth: true }],
      auth: { users: [{ username: 'alice', password: 'wonderland' }] },
      acceptedDomains: ['example.com'],
      relay: { allowFrom: ['10.0.0.0/8'] },
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
    });
    const client = await SmtpClient.open(sluice.port);
    assert.equal((await client.command(`AUTH PLAIN ${plain('mallory', 'guess')}`)).code, 535);
    assert.equal((await client.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await client.command('RCPT TO:<victim@elsewhere.test>')).code, 550);
    await client.command('RSET');
    assert.equal((await client.send('a@example.net', ['ok@example.com', 'later@example.com', 'gone@example.com'], body('dashboard'))).code, 250);
    await client.command('QUIT');
    await sink.waitFor(1);

    const wanted = new Map<string, string[]>();
    for (const { title, expr } of await dashboardQueries()) for (const name of metricNames(expr)) wanted.set(name, [...(wanted.get(name) ?? []), title]);
    let exposition = '';
    let missing: string[] = [];
    // the outcomes are counted as the attempt's records are written, the bounce report a moment later
    await waitUntil(async () => {
      exposition = await scrape(sluice.managementPort);
      const present = samples(exposition);
      missing = [...wanted.keys()].filter((name) => !present.has(name));
      return missing.length === 0;
    }, 10_000).catch(() => undefined);
    assert.deepEqual(
      missing.map((name) => `${name} (${wanted.get(name)!.join(', ')})`),
      [],
      'every metric of the dashboard has a sample in /metrics',
    );
    assert.ok(wanted.size >= 25, `the dashboard reads ${wanted.size} metrics`);
    assert.equal(valueOf(exposition, 'sluice_delivery_recipients_total{route="backend",status="sent"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_delivery_recipients_total{route="backend",status="deferred"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_delivery_recipients_total{route="backend",status="bounced"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_smtp_refusals_total{listener="inbound",reason="relayDenied",code="550"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_auth_failures_total{listener="inbound",method="PLAIN"}'), 1);
    assert.ok(!/127\.0\.0\.1|@example\./.test(exposition.split('\n').filter((l) => !l.startsWith('#')).join('\n')), 'no client address or mail address in a label');
    // and every metric Sluice serves is documented
    const docs = await readFile(DOCS, 'utf8');
    const served = [...exposition.matchAll(/^# TYPE (sluice_\w+) /gm)].map((m) => m[1]!);
    assert.ok(served.length >= 20);
    assert.deepEqual(served.filter((name) => !docs.includes(`\`${name}\``)), [], 'every sluice_ metric is in docs/metrics.md');
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) assert.ok(docs.includes(name), name);
    await sluice.stop();
  });
});

describe('the metrics', () => {
  it('show a queue in Retry, its messages and the age of its oldest message growing with the clock', async (t) => {
    const dead = await deadPort();
    const sluice = await startTestSluice(t, {
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${dead}`], tls: 'none' }],
    });
    const management = sluice.sluice.management.address.port;
    await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body('retry'));
    await waitUntil(() => sluice.sluice.delivery.queues().find((q) => q.name === 'backend')?.status === 'Retry');
    let exposition = await scrape(management);
    assert.equal(valueOf(exposition, 'sluice_queue_retry{queue="test/backend"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_queue_retry{queue="test/Submission"}'), 0);
    assert.equal(valueOf(exposition, 'sluice_queue_status{queue="test/backend",status="Retry"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_queue_status{queue="test/backend",status="Ready"}'), 0);
    assert.equal(valueOf(exposition, 'sluice_queue_retry_failures{queue="test/backend"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_queue_messages{queue="test/backend",delivery_type="SmartHostConnectorDelivery"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_queue_oldest_message_age_seconds{queue="test/backend"}'), 0, 'the test clock has not moved');
    assert.equal(valueOf(exposition, 'sluice_queue_oldest_message_age_seconds{queue="test/Submission"}'), 0, 'an empty queue');
    assert.equal(valueOf(exposition, 'sluice_queue_connections{queue="test/backend"}'), 0);
    assert.equal(valueOf(exposition, 'sluice_store_messages'), 1);

    // 30 s later (before the next attempt, due after a minute) the message is 30 s old
    sluice.clock.advance(30_000);
    exposition = await scrape(management);
    assert.equal(valueOf(exposition, 'sluice_queue_oldest_message_age_seconds{queue="test/backend"}'), 30);
    assert.equal(valueOf(exposition, 'sluice_queue_retry{queue="test/backend"}'), 1);

    // an operator suspends the queue: its status is Suspended, no longer Retry
    sluice.clock.advance(15_000);
    const suspend = await fetch(`http://127.0.0.1:${management}/api/v1/queues/suspend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identity: 'test/backend' }),
    });
    assert.equal(suspend.status, 200);
    exposition = await scrape(management);
    assert.equal(valueOf(exposition, 'sluice_queue_status{queue="test/backend",status="Suspended"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_queue_retry{queue="test/backend"}'), 0);
    assert.equal(valueOf(exposition, 'sluice_queue_oldest_message_age_seconds{queue="test/backend"}'), 45);
    assert.ok((valueOf(exposition, 'sluice_store_transactions_total') ?? 0) >= 1, 'the store has committed');
    assert.ok((valueOf(exposition, 'sluice_store_messages_committed_total') ?? 0) >= 1);
  });

  it('count sessions open, refusals by reason, AUTH failures and outcomes by route', async (t) => {
    const sink = await startSink(t);
    const sluice = await startTestSluice(t, {
      listeners: [{ name: 'inbound', listen: '127.0.0.1:0', allowInsecureAuth: true, maxRecipients: 1 }],
      auth: { users: [{ username: 'alice', password: 'wonderland' }] },
      acceptedDomains: ['example.com'],
      relay: { allowFrom: ['10.0.0.0/8'] },
      routes: [{ name: 'backend', match: ['example.com'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none' }],
    });
    const management = sluice.sluice.management.address.port;
    const first = await SmtpClient.open(sluice.port);
    const second = await SmtpClient.open(sluice.port);
    await waitUntil(async () => valueOf(await scrape(management), 'sluice_smtp_sessions{listener="inbound"}') === 2);
    assert.equal((await first.command(`AUTH PLAIN ${plain('mallory', 'guess')}`)).code, 535);
    assert.equal((await first.command(`AUTH LOGIN`)).code, 334);
    assert.equal((await first.command(Buffer.from('mallory').toString('base64'))).code, 334);
    assert.equal((await first.command(Buffer.from('guess').toString('base64'))).code, 535);
    assert.equal((await second.command('MAIL FROM:<a@example.net>')).code, 250);
    assert.equal((await second.command('RCPT TO:<victim@elsewhere.test>')).code, 550);
    assert.equal((await second.command('RCPT TO:<victim@elsewhere.test>')).code, 550);
    assert.equal((await second.command('RCPT TO:<one@example.com>')).code, 250);
    assert.equal((await second.command('RCPT TO:<two@example.com>')).code, 452);
    assert.equal((await second.data(body('counted'))).code, 250);
    await second.command('QUIT');
    await second.closedByServer();
    await sink.waitFor(1);
    await waitUntil(async () => valueOf(await scrape(management), 'sluice_smtp_sessions{listener="inbound"}') === 1);
    first.close();
    await waitUntil(async () => valueOf(await scrape(management), 'sluice_smtp_sessions{listener="inbound"}') === 0);
    await waitUntil(async () => valueOf(await scrape(management), 'sluice_delivery_recipients_total{route="backend",status="sent"}') === 1);

    const exposition = await scrape(management);
    assert.equal(valueOf(exposition, 'sluice_smtp_sessions_total{listener="inbound"}'), 2);
    assert.equal(valueOf(exposition, 'sluice_auth_failures_total{listener="inbound",method="PLAIN"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_auth_failures_total{listener="inbound",method="LOGIN"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_smtp_refusals_total{listener="inbound",reason="authFailed",code="535"}'), 2);
    assert.equal(valueOf(exposition, 'sluice_smtp_refusals_total{listener="inbound",reason="relayDenied",code="550"}'), 2);
    assert.equal(valueOf(exposition, 'sluice_smtp_refusals_total{listener="inbound",reason="other",code="452"}'), 1, 'too many recipients: smtp-server\'s own reply');
    assert.equal(valueOf(exposition, 'sluice_messages_accepted_total{listener="inbound"}'), 1);
    assert.equal(valueOf(exposition, 'sluice_recipients_total{outcome="delivered"}'), 1, 'the existing counter keeps its labels');
    assert.equal(valueOf(exposition, 'sluice_delivery_recipients_total{route="backend",status="sent"}'), 1);
    assert.match(exposition, /^process_resident_memory_bytes \d+/m);
    assert.match(exposition, /^nodejs_eventloop_lag_p99_seconds [\d.e-]+$/m);
  });
});
