// The queue store conformance suite (ST-1..ST-3): every backend must pass it.
// `open` returns a store on a fresh (or, given the same dir, the same) location.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { SUBMISSION_QUEUE, type Condition, type NewMessage, type QueueStore, type RoutedItemInput, type RoutingDecision, type StoredMessage } from '../../src/store/types.js';
import { tempDir } from '../support/temp.js';

export type OpenStore = (location: string, clock: TestClock) => Promise<QueueStore>;

export function message(overrides: Partial<NewMessage> = {}): NewMessage {
  return {
    mailFrom: 'sender@example.net',
    recipients: [{ address: 'rcpt@example.com', notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;rcpt@example.com' }],
    receivedAt: Date.UTC(2026, 10, 24, 12),
    bodyType: '8BITMIME',
    smtpUtf8: false,
    dsnRet: 'HDRS',
    dsnEnvid: 'env-1',
    sourceIp: '192.0.2.7',
    sourceName: 'inbound',
    heloName: 'client.example.net',
    internetMessageId: '<m1@example.net>',
    subject: 'hello',
    traceHeader: Buffer.from('Received: from x by y; Tue, 24 Nov 2026 12:00:00 +0000\r\n'),
    ...overrides,
  };
}

export async function bodyOf(store: QueueStore, id: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of store.readBody(id)) parts.push(part);
  return Buffer.concat(parts);
}

export async function storeMessage(store: QueueStore, body: Buffer, overrides: Partial<NewMessage> = {}, pieceBytes = 64 * 1024) {
  const writer = store.receive();
  for (let offset = 0; offset < body.length; offset += pieceBytes) await writer.write(body.subarray(offset, offset + pieceBytes));
  return writer.commit(message(overrides));
}

export const HOUR = 3_600_000;
export const inQueue = (queue: string): Condition => ({ column: 'queue', operator: '-eq', value: queue, text: true });

/** What claimSubmission hands out for one message. */
export interface Claimed {
  message: StoredMessage;
  claim: number;
}

/** A decision sending some recipients of a claimed message to one smart-host queue. */
export function route(claimed: Claimed, queue: string, recipients = [0], item: Partial<RoutedItemInput> = {}): RoutingDecision {
  const { message, claim } = claimed;
  return {
    messageId: message.id,
    claim,
    items: [{ queue, deliveryType: 'SmartHostConnectorDelivery', route: queue, recipients, expiresAt: message.receivedAt + 72 * HOUR, delayAt: null, ...item }],
    failures: [],
  };
}

/** Messages stored (one per subject, in that order) and claimed by the categorizer, not routed yet. */
export async function claimedMessages(store: QueueStore, subjects: string[], now = 0): Promise<Claimed[]> {
  for (const subject of subjects) await storeMessage(store, Buffer.from(`${subject}\r\n`), { subject, internetMessageId: `<${subject}@example.net>` });
  return store.claimSubmission(subjects.length, now);
}

/** Messages stored and routed, one item each, into `queue`; returns them in receipt order. */
export async function routedMessages(store: QueueStore, queue: string, subjects: string[], item: Partial<RoutedItemInput> = {}): Promise<StoredMessage[]> {
  const claimed = await claimedMessages(store, subjects);
  await store.routeMessages(claimed.map((c) => route(c, queue, [0], item)));
  return claimed.map((c) => c.message);
}

/** A store on a fresh location; `restart` closes it with whatever is in hand and opens it again, as after a crash. */
export async function freshStore(t: TestContext, open: OpenStore) {
  const dir = await tempDir(t);
  const clock = new TestClock();
  let store = await open(dir, clock);
  t.after(() => store.close().catch(() => undefined));
  const restart = async () => {
    await store.close();
    store = await open(dir, clock);
    return store;
  };
  return { dir, clock, store, restart };
}

export function describeQueueStore(backend: string, open: OpenStore): void {
  describe(`QueueStore conformance: ${backend}`, () => {
    const fresh = (t: TestContext) => freshStore(t, open);

    it('stores envelope and body byte-identically and puts the message in Submission (ST-1)', async (t) => {
      const { store } = await fresh(t);
      const body = randomBytes(3 * 1024 * 1024 + 17); // several chunks
      const stored = await storeMessage(store, body);
      assert.equal(stored.queue, SUBMISSION_QUEUE);
      const loaded = await store.getMessage(stored.id);
      assert.ok(loaded);
      assert.equal(loaded.size, body.length);
      assert.equal(loaded.mailFrom, 'sender@example.net');
      assert.deepEqual(loaded.recipients, [{ address: 'rcpt@example.com', notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;rcpt@example.com', status: 'Ready' }]);
      assert.equal(loaded.dsnRet, 'HDRS');
      assert.equal(loaded.dsnEnvid, 'env-1');
      assert.equal(loaded.internetMessageId, '<m1@example.net>');
      assert.equal(loaded.traceHeader.toString(), message().traceHeader.toString());
      assert.ok((await bodyOf(store, stored.id)).equals(body));
    });

    it('keeps an empty body and the null sender', async (t) => {
      const { store } = await fresh(t);
      const stored = await storeMessage(store, Buffer.alloc(0), { mailFrom: '' });
      const loaded = await store.getMessage(stored.id);
      assert.equal(loaded?.mailFrom, '');
      assert.equal((await bodyOf(store, stored.id)).length, 0);
    });

    it('hides a message until commit and forgets an aborted one', async (t) => {
      const { store } = await fresh(t);
      const writer = store.receive();
      await writer.write(randomBytes(600 * 1024));
      assert.equal(await store.getMessage(writer.id), undefined);
      assert.equal((await store.listQueue(SUBMISSION_QUEUE, { limit: 10 })).length, 0);
      await writer.abort();
      assert.equal((await bodyOf(store, writer.id)).length, 0);
      assert.equal((await store.stats()).messages, 0);
    });

    it('sweeps bodies left half-written by a crash at the next open (ST-3)', async (t) => {
      const dir = await tempDir(t);
      const clock = new TestClock();
      const first = await open(dir, clock);
      const kept = await storeMessage(first, Buffer.from('kept\r\n'));
      const partial = first.receive();
      await partial.write(randomBytes(1024 * 1024)); // chunks on disk, never committed
      await first.close();
      const second = await open(dir, clock);
      t.after(() => second.close());
      assert.equal((await bodyOf(second, partial.id)).length, 0);
      assert.equal(await second.getMessage(partial.id), undefined);
      assert.ok((await bodyOf(second, kept.id)).equals(Buffer.from('kept\r\n')));
    });

    it('lists a queue in receipt order, a page at a time (QU-5, ST-4)', async (t) => {
      const { store } = await fresh(t);
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) ids.push((await storeMessage(store, Buffer.from(`m${i}\r\n`))).id);
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listQueue(SUBMISSION_QUEUE, { after, limit: 10 });
        if (page.length === 0) break;
        seen.push(...page.map((m) => m.id));
        after = page[page.length - 1]!.id;
      }
      assert.deepEqual(seen, ids);
    });

    it('commits many concurrent messages with fewer fsyncs than messages (group commit, ST-2)', async (t) => {
      const { store } = await fresh(t);
      const before = await store.stats();
      const stored = await Promise.all(Array.from({ length: 200 }, (_, i) => storeMessage(store, Buffer.from(`body ${i}\r\n`))));
      const after = await store.stats();
      const committed = after.messagesCommitted - before.messagesCommitted;
      const syncs = after.syncedTransactions - before.syncedTransactions;
      assert.equal(committed, 200);
      assert.ok(syncs < committed / 4, `expected far fewer fsyncs than messages, got ${syncs} for ${committed}`);
      assert.equal(new Set(stored.map((m) => m.id)).size, 200);
      assert.equal(after.messages, 200);
    });

    it('refuses to reuse a committed writer', async (t) => {
      const { store } = await fresh(t);
      const writer = store.receive();
      await writer.write(Buffer.from('x\r\n'));
      await writer.commit(message());
      await assert.rejects(writer.write(Buffer.from('y')), /already committed/);
      await assert.rejects(writer.commit(message()), /already committed/);
    });
  });
}
