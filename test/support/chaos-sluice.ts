// Sluice's side of a chaos test: mail in, and the checks every chaos test ends
// with (everything arrived, nothing Active, the store empty, the process alive,
// stop() prompt). Black-box: SMTP in, the hop, the store's listing and stats,
// the management API.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { systemClock } from '../../src/clock.js';
import { apiJson } from './api.js';
import type { ChaosHop } from './chaos-hop.js';
import { waitUntil } from './clock.js';
import { SmtpClient } from './smtp-client.js';
import { startTestSluice, type TestSluice } from './sluice.js';

/** A message body with its Subject and Message-ID, and lines that need dot-stuffing. */
export function chaosBody(subject: string): string {
  const id = subject.replace(/[^A-Za-z0-9.-]+/g, '-');
  return (
    `From: a@example.net\r\nTo: b@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${id}@chaos.test>\r\n\r\n` +
    `Hello ${subject}.\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\nend\r\n`
  );
}

/**
 * Submits these subjects (one message each, from a@example.net to b@example.com) over `sessions`
 * concurrent SMTP sessions; each session sends its share in order. Fails unless every one got 250.
 */
export async function submitAll(port: number, subjects: string[], sessions = 1): Promise<void> {
  const shares: string[][] = Array.from({ length: sessions }, () => []);
  subjects.forEach((subject, i) => shares[i % sessions]!.push(subject));
  await Promise.all(
    shares.map(async (share) => {
      if (share.length === 0) return;
      const client = await SmtpClient.open(port);
      try {
        for (const subject of share) {
          const reply = await client.send('a@example.net', ['b@example.com'], chaosBody(subject));
          if (reply.code !== 250) throw new Error(`${subject} not accepted: ${reply.text}`);
        }
        await client.command('QUIT').catch(() => undefined);
      } finally {
        client.close();
      }
    }),
  );
}

/** The test context handed to startTestSluice by boundedCleanup, and what to do when a cleanup is stuck. */
export interface BoundedCleanup extends Pick<TestContext, 'after'> {
  /** Runs when a cleanup did not finish in time (e.g. close the store, whose worker thread would keep the process alive). */
  onStuck(fn: () => unknown): void;
}

/**
 * A stand-in for the test context given to startTestSluice: its cleanups (stop Sluice, remove the temp dir)
 * run last-in first-out in one after hook of the real test, each bounded to `limitMs`, so a Sluice whose stop()
 * hangs fails its own test (see expectCleanEnd) instead of hanging the whole file.
 */
export function boundedCleanup(t: TestContext, limitMs = 5_000): BoundedCleanup {
  const hooks: Array<Parameters<TestContext['after']>[0]> = [];
  const stuck: Array<() => unknown> = [];
  const bounded = async (run: () => unknown): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      Promise.resolve()
        .then(run)
        .then(() => 'done', () => 'failed'),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timed out'), limitMs))),
    ]);
    clearTimeout(timer);
    return outcome !== 'timed out';
  };
  t.after(async () => {
    for (const hook of hooks.reverse()) {
      if (await bounded(() => hook?.(t, () => undefined))) continue;
      t.diagnostic(`a cleanup did not finish within ${limitMs} ms: left behind`);
      for (const fn of stuck) await bounded(fn);
    }
  });
  return {
    after: ((fn) => void hooks.push(fn)) as TestContext['after'],
    onStuck: (fn) => void stuck.push(fn),
  };
}

export interface CleanEnd {
  /** Every one must arrive at the hop. */
  subjects: string[];
  /**
   * RFC 5321 §6.1: a copy the hop took without acknowledging it (a fault after the final dot) may come again.
   * Each subject must still have exactly one acknowledged copy. Without this, exactly one copy in all.
   */
  duplicatesAllowed?: boolean;
  /** How long to wait for every subject to arrive. */
  arrivalTimeoutMs?: number;
  /** How long, after that, for the store to empty. */
  drainTimeoutMs?: number;
}

const within = <T>(promise: Promise<T>, ms: number, onTimeout: T): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(onTimeout), ms)))]).finally(() => clearTimeout(timer));
};

/**
 * The end of every chaos test: each subject arrived (exactly once, or once acknowledged with duplicatesAllowed),
 * byte-exact, to the right envelope; the store empties; no message is Active (management API); Sluice still
 * answers on SMTP and /healthz; and `stop()` completes within 10 s. Runs every check and fails with all problems.
 */
export async function expectCleanEnd(sluice: TestSluice, hop: ChaosHop, expected: CleanEnd): Promise<void> {
  const problems: string[] = [];
  const arrivalTimeoutMs = expected.arrivalTimeoutMs ?? 15_000;
  try {
    await hop.waitForMessages(new Set(expected.subjects).size, { acknowledgedOnly: true, timeoutMs: arrivalTimeoutMs });
  } catch (error) {
    problems.push((error as Error).message);
  }

  // once the store is empty Sluice has nothing left to send: only then are the copies counted
  const store = sluice.sluice.store;
  const drainTimeoutMs = expected.drainTimeoutMs ?? 10_000;
  let drained = true;
  try {
    await waitUntil(async () => (await store.stats()).messages === 0, drainTimeoutMs);
  } catch {
    drained = false;
  }
  if (!drained) {
    const left = await store.listMessages([], 20);
    const stats = await store.stats();
    problems.push(
      `the store still holds ${stats.messages} messages after ${drainTimeoutMs} ms: ` +
        left.map((m) => `${m.subject ?? m.id} [${m.queue} ${m.status}${m.lastError ? `: ${m.lastError}` : ''}]`).join('; '),
    );
    // for the diagnosis: the queues as the management API lists them, and the last warnings
    const queues = await within(
      apiJson<Array<Record<string, unknown>>>(sluice.sluice.management.address.port, 'GET', '/api/v1/queues').catch((error: unknown) => `(${(error as Error).message})`),
      3_000,
      '(no answer)',
    );
    problems.push(`queues at that point: ${JSON.stringify(queues)}`);
    const warnings = sluice.logs.filter((e) => Number(e.level) >= 40).slice(-5);
    if (warnings.length > 0) problems.push(`last warnings: ${warnings.map((e) => JSON.stringify(e)).join(' | ')}`);
  }

  const groups = hop.distinct('subject');
  const wanted = new Set(expected.subjects);
  const missing = expected.subjects.filter((s) => !groups.get(s)?.some((c) => c.acknowledged));
  if (missing.length > 0) problems.push(`${missing.length} never arrived acknowledged: ${missing.slice(0, 12).join(', ')}${missing.length > 12 ? ', ...' : ''}`);
  const strangers = [...groups.keys()].filter((s) => !wanted.has(s));
  if (strangers.length > 0) problems.push(`unexpected messages arrived: ${strangers.slice(0, 5).join(', ')}`);
  for (const subject of expected.subjects) {
    const copies = groups.get(subject) ?? [];
    if (copies.length === 0) continue;
    const acknowledged = copies.filter((c) => c.acknowledged).length;
    if (expected.duplicatesAllowed ? acknowledged !== 1 : copies.length !== 1 || acknowledged !== 1) {
      problems.push(`${subject}: ${copies.length} copies, ${acknowledged} acknowledged (connections ${copies.map((c) => c.connection).join(', ')})`);
    }
    const body = chaosBody(subject);
    for (const copy of copies) {
      if (!copy.body.toString('latin1').endsWith(`\r\n${body}`) || copy.mailFrom !== 'a@example.net' || copy.rcptTo.join(',') !== 'b@example.com') {
        problems.push(`${subject}: copy on connection ${copy.connection} differs from what was sent (from ${copy.mailFrom}, to ${copy.rcptTo.join(',')}, ${copy.body.length} bytes)`);
      }
    }
  }
  const managementPort = sluice.sluice.management.address.port;
  try {
    const active = await within(
      apiJson<{ messages: Array<Record<string, unknown>> }>(managementPort, 'GET', `/api/v1/messages?filter=${encodeURIComponent('Status -eq "Active"')}`),
      5_000,
      undefined,
    );
    if (!active) problems.push('the management API did not answer the Active listing within 5 s');
    else if (active.messages.length > 0) problems.push(`${active.messages.length} messages still Active: ${active.messages.map((m) => `${String(m.Subject)} [${String(m.Queue)}]`).join('; ')}`);
  } catch (error) {
    problems.push(`listing Active messages failed: ${(error as Error).message}`);
  }

  // alive: it still answers on its management API and its SMTP listener
  try {
    const health = await fetch(`http://127.0.0.1:${managementPort}/healthz`, { signal: AbortSignal.timeout(3_000) });
    if (health.status !== 200) problems.push(`/healthz answered ${health.status}`);
  } catch (error) {
    problems.push(`/healthz did not answer: ${(error as Error).message}`);
  }
  try {
    const client = await within(SmtpClient.open(sluice.port), 3_000, undefined);
    if (!client) problems.push('the SMTP listener did not greet within 3 s');
    else {
      await client.command('QUIT').catch(() => undefined);
      client.close();
    }
  } catch (error) {
    problems.push(`the SMTP listener did not greet: ${(error as Error).message}`);
  }

  const started = Date.now();
  const stopped = await within(
    sluice.sluice.stop().then(
      () => 'stopped',
      (error: unknown) => `stop() failed: ${(error as Error).message}`,
    ),
    10_000,
    'timeout',
  );
  if (stopped === 'timeout') {
    problems.push('stop() did not complete within 10 s');
    // the store's worker thread would keep the process alive; the test has failed already
    await within(store.close().catch(() => undefined), 3_000, undefined);
  }
  else if (stopped !== 'stopped') problems.push(`${stopped} (after ${Date.now() - started} ms)`);

  if (problems.length > 0) {
    const faults = hop.injected.reduce<Record<string, number>>((counts, f) => ({ ...counts, [f.kind]: (counts[f.kind] ?? 0) + 1 }), {});
    throw new assert.AssertionError({
      message: `chaos test did not end clean:\n  - ${problems.join('\n  - ')}\n  (hop: ${hop.connections} connections, ${hop.messages.length} messages received, faults ${JSON.stringify(faults)})`,
    });
  }
}

/** A smart-host route to the hop, timeouts and retries in the second range, the real clock. */
export async function sluiceForHop(t: TestContext, hop: ChaosHop, route: Record<string, unknown> = {}): Promise<TestSluice> {
  const cleanup = boundedCleanup(t);
  const sluice = await startTestSluice(
    cleanup,
    {
      routes: [{ name: 'chaos', match: ['example.com'], smartHosts: [`127.0.0.1:${hop.port}`], tls: 'none', bounceProfile: 'quick', ...route }],
      bounceProfiles: { quick: { initialRetry: '500ms', backoff: 2, maxRetry: '2s' } },
      delivery: { connectTimeout: '1s', commandTimeout: '1500ms', dataTimeout: '2s' },
      retry: { glitchRetryInterval: '500ms', transientFailureRetryInterval: '1s', outboundConnectionFailureRetryInterval: '2s' },
    },
    systemClock,
  );
  cleanup.onStuck(() => sluice.sluice.store.close());
  return sluice;
}
