// Several PostgreSQL store instances (nodes, each its own owner) on one
// database (ST-5, QU-6, MG-2, IN-7, ST-3): concurrent claims hand every
// message and item out exactly once, a lapsed lease is taken over by the other
// node and the late write under it refused, queue state is cluster-wide while
// listener suspension stays per node, and a node's start takes back only its
// own claims and half-received bodies.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { POISON_QUEUE, SUBMISSION_QUEUE, type QueueStore } from '../../src/store/types.js';
import { tempDir } from '../support/temp.js';
import { bodyOf, inQueue, message, route, routedMessages, storeMessage } from './conformance.js';
import { NO_PG, openPg } from './postgres-support.js';

/** Two nodes on one fresh schema. */
async function twoNodes(t: TestContext, leaseTimeout = 60_000) {
  const location = await tempDir(t);
  const clock = new TestClock();
  const a = await openPg(location, clock, { owner: 'a/1', leaseTimeout });
  const b = await openPg(location, clock, { owner: 'b/1', leaseTimeout });
  t.after(() => Promise.all([a.close(), b.close()]));
  return { location, clock, a, b };
}

/** Claims until nothing is left, `batch` at a time; returns what it got. */
async function drainSubmission(store: QueueStore, batch: number): Promise<string[]> {
  const got: string[] = [];
  for (;;) {
    const claimed = await store.claimSubmission(batch, 0);
    if (claimed.length === 0) return got;
    got.push(...claimed.map((c) => c.message.id));
    await store.routeMessages(claimed.map((c) => route(c, 'q')));
  }
}

async function drainDeliveries(store: QueueStore, batch: number): Promise<number[]> {
  const got: number[] = [];
  for (;;) {
    const items = await store.claimDeliveries('q', batch, 0);
    if (items.length === 0) return got;
    got.push(...items.map((i) => i.itemId));
    await Promise.all(items.map((i) => store.recordDelivery(i, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 0)));
  }
}

const exactlyOnce = <T>(a: T[], b: T[], total: number) => {
  assert.equal(a.length + b.length, total, 'every one handed out');
  assert.equal(new Set([...a, ...b]).size, total, 'none twice');
  assert.ok(a.length > 0 && b.length > 0, `both nodes got work (${a.length} + ${b.length})`);
};

describe('PostgreSQL store: two nodes on one database', { skip: NO_PG }, () => {
  it('hands 2 x 1,000 messages and their items out exactly once while both nodes claim at once (ST-5)', async (t) => {
    const { a, b } = await twoNodes(t);
    const accept = (store: QueueStore, n: number) => Promise.all(Array.from({ length: n }, (_, i) => storeMessage(store, Buffer.from(`m${i}\r\n`))));
    const accepted = (await Promise.all([accept(a, 1000), accept(b, 1000)])).flat();
    assert.equal(new Set(accepted.map((m) => m.id)).size, 2000);
    assert.equal((await a.stats()).messages, 2000, 'the totals are the database’s, not the node’s');

    const [routedByA, routedByB] = await Promise.all([drainSubmission(a, 50), drainSubmission(b, 50)]);
    exactlyOnce(routedByA, routedByB, 2000);
    const [deliveredByA, deliveredByB] = await Promise.all([drainDeliveries(a, 25), drainDeliveries(b, 25)]);
    exactlyOnce(deliveredByA, deliveredByB, 2000);
    assert.deepEqual([(await a.stats()).messages, (await b.stats()).bodyBytes], [0, 0], 'every message delivered once and gone');
  });

  it('lets the other node take over a lapsed lease, refuses the late write under it and counts the crash (ST-5, QU-6)', async (t) => {
    const { a, b } = await twoNodes(t);
    const lease = a.leaseTimeout;
    const [message] = await routedMessages(a, 'q', ['one']);
    for (const round of [0, 1]) {
      const start = round * 2 * lease;
      const [held] = await a.claimDeliveries('q', 1, start);
      assert.equal(await a.beginAttempt(held!, start), 'go');
      assert.deepEqual(await b.reclaimExpiredLeases(start + lease - 1), [], 'not before the lease lapses');
      assert.deepEqual(await b.reclaimExpiredLeases(start + lease), round === 0 ? [{ name: 'q', route: 'q' }] : []);
      assert.equal(await a.recordDelivery(held!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, start + lease), 'lost');
      assert.deepEqual(await a.renewLeases([held!], start + lease), [{ itemId: held!.itemId, claim: held!.claim }]);
      if (round === 1) break;
      // taken over: B holds it now, and A's late write still changes nothing
      const [taken] = await b.claimDeliveries('q', 1, start + lease);
      assert.equal(taken!.itemId, held!.itemId);
      assert.equal(await a.beginAttempt(held!, start + lease), 'lost');
      assert.deepEqual(await b.releaseDeliveries([taken!]), []);
    }
    // two lapses with an attempt on the wire: Poison, as two crashes of one node would
    const poisoned = await b.listMessages([inQueue(POISON_QUEUE)], 10);
    assert.deepEqual(poisoned.map((m) => [m.id, m.status]), [[message!.id, 'Suspended']]);
    assert.match(poisoned[0]!.lastError!, /stopped 2 times while this message was being delivered/);
  });

  it('applies queue state on every node, shows every node the whole queue, and keeps listener suspension per node (MG-2, DL-3, IN-7)', async (t) => {
    const { a, b } = await twoNodes(t);
    await routedMessages(a, 'q', ['one', 'two']);
    assert.deepEqual((await b.listMessages([inQueue('q')], 10)).map((m) => m.subject), ['one', 'two']);
    assert.equal(await a.setQueueSuspended('q', true), true);
    assert.deepEqual(await b.claimDeliveries('q', 10, 0), [], 'suspended through A: B hands out nothing');
    assert.equal((await b.listQueues()).find((q) => q.name === 'q')!.suspended, true);
    await b.setQueueSuspended('q', false);
    await b.setQueueRetry('q', { at: 5000, since: 0, failures: 1, lastError: '421 busy', idleSince: 0 });
    assert.deepEqual(await a.claimDeliveries('q', 10, 4999), [], 'in Retry through B: A waits for the retry time');
    assert.equal((await a.claimDeliveries('q', 10, 5000)).length, 2);
    await a.setListenerSuspended('inbound', true);
    assert.deepEqual([await a.suspendedListeners(), await b.suspendedListeners()], [['inbound'], []]);
  });

  it('takes back only its own claims and half-received bodies when a node starts again (ST-3)', async (t) => {
    const { location, clock, a, b } = await twoNodes(t);
    await routedMessages(a, 'q', ['mine', 'theirs']);
    const [mine] = await a.claimDeliveries('q', 1, 0);
    const [theirs] = await b.claimDeliveries('q', 1, 0);
    await b.beginAttempt(theirs!, 0);
    const partial = b.receive();
    const body = randomBytes(200 * 1024);
    await partial.write(body); // B is still receiving it
    await a.close();
    const restarted = await openPg(location, clock, { owner: 'a/2' });
    t.after(() => restarted.close());
    const statuses = (await restarted.listMessages([inQueue('q')], 10)).map((m) => [m.subject, m.status]);
    assert.deepEqual(statuses, [['mine', 'Ready'], ['theirs', 'Active']], 'A’s old claim is over; B’s stands');
    assert.equal(await b.recordDelivery(theirs!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 0), null);
    assert.equal(await restarted.recordDelivery(mine!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 0), 'lost');
    const committed = await partial.commit(message({ subject: 'partial' }));
    assert.ok((await bodyOf(restarted, committed.id)).equals(body), 'B’s body in progress was not swept by A’s start');
    assert.equal((await restarted.listQueue(SUBMISSION_QUEUE, { limit: 10 })).length, 1);
  });
});
