// The queue store conformance suite, second part: the operations above
// intake, which every backend must also pass. Routing into items (QU-4),
// FIFO hand-out and attempts (QU-5, DL-2), operator actions with their pending
// forms (MG-3), the state kept for queues and listeners, and what a start does
// with work that was in hand at a crash (ST-3, QU-6): a store closed with
// claims outstanding is, for its next open, a store whose process died.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { POISON_QUEUE, UNREACHABLE_QUEUE, type Condition, type QueueStore, type RoutingDecision, type StoredMessage } from '../../src/store/types.js';
import { tempDir } from '../support/temp.js';
import { storeMessage, type OpenStore } from './conformance.js';

const HOUR = 3_600_000;
const inQueue = (queue: string): Condition => ({ column: 'queue', operator: '-eq', value: queue, text: true });
const route = (message: StoredMessage, queue: string, recipients = [0]): RoutingDecision => ({
  messageId: message.id,
  items: [{ queue, deliveryType: 'SmartHostConnectorDelivery', route: queue, recipients, expiresAt: message.receivedAt + 72 * HOUR, delayAt: null }],
  failures: [],
});

/** Three messages stored and claimed by the categorizer (marked Active). */
async function claimedThree(store: QueueStore) {
  for (const name of ['one', 'two', 'three']) await storeMessage(store, Buffer.from(`${name}\r\n`), { subject: name, internetMessageId: `<${name}@example.net>` });
  return (await store.claimSubmission(10)).map((c) => c.message);
}

export function describeQueueOperations(backend: string, open: OpenStore): void {
  describe(`QueueStore conformance, operations: ${backend}`, () => {
    async function fresh(t: TestContext) {
      const dir = await tempDir(t);
      const clock = new TestClock();
      let store = await open(dir, clock);
      t.after(() => store.close().catch(() => undefined));
      /** Closes with whatever is in hand and opens again: what the next start sees after a crash. */
      const restart = async () => {
        await store.close();
        store = await open(dir, clock);
        return store;
      };
      return { store, clock, restart };
    }

    it('routes a message into one item per next hop and hands items out oldest first (QU-4, QU-5, DL-2)', async (t) => {
      const { store } = await fresh(t);
      const two = await storeMessage(store, Buffer.from('two hops\r\n'), { recipients: [{ address: 'a@example.com' }, { address: 'b@example.org' }] });
      const [claimed] = await store.claimSubmission(10);
      assert.deepEqual(claimed!.positions, [0, 1]);
      await store.routeMessages([
        {
          messageId: two.id,
          items: [
            { queue: 'com', deliveryType: 'SmartHostConnectorDelivery', route: 'com', recipients: [0], expiresAt: two.receivedAt + 72 * HOUR, delayAt: null },
            { queue: UNREACHABLE_QUEUE, deliveryType: 'Unreachable', route: null, recipients: [1], lastError: 'no route', expiresAt: two.receivedAt + 72 * HOUR, delayAt: null },
          ],
          failures: [],
        },
      ]);
      const counts = Object.fromEntries((await store.listQueues()).map((q) => [q.name, q.messageCount]));
      assert.deepEqual(counts, { Submission: 0, com: 1, Unreachable: 1 });
      const [item] = await store.claimDeliveries('com', 10, 0);
      assert.deepEqual(item!.recipients.map((r) => r.address), ['a@example.com']);
      await store.beginAttempt(item!.itemId);
      assert.equal(await store.recordDelivery(item!.itemId, [{ position: 0, result: 'deferred', reply: '451 later' }], 1000, 0), null);
      assert.deepEqual(await store.promoteDue(999), []);
      assert.deepEqual(await store.promoteDue(1000), [{ name: 'com', route: 'com' }]);
      const [again] = await store.claimDeliveries('com', 10, 1000);
      assert.equal(again!.attempts, 1);
      await store.recordDelivery(again!.itemId, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 1000);
      const left = (await store.getMessage(two.id))!;
      assert.deepEqual(left.recipients.map((r) => r.status), ['Delivered', 'Ready'], 'the message stays for its Unreachable recipient');
    });

    it('lists by filter, suspends, resumes and removes items, with PendingSuspend for an item in an attempt (MG-3)', async (t) => {
      const { store } = await fresh(t);
      const [one, two, three] = await claimedThree(store);
      await store.routeMessages([route(one!, 'q'), route(two!, 'q'), route(three!, 'q')]);
      const listed = await store.listMessages([inQueue('q'), { column: 'subject', operator: '-like', value: 't*', text: true }], 10);
      assert.deepEqual(listed.map((m) => [m.subject, m.status]), [['two', 'Ready'], ['three', 'Ready']]);

      const [active] = await store.claimDeliveries('q', 1, 0); // "one" is in an attempt
      const byId = Object.fromEntries((await store.listMessages([inQueue('q')], 10)).map((m) => [m.subject, m.itemId!]));
      assert.deepEqual(await store.suspendItems([byId.one!, byId.two!]), { suspended: [byId.two], pending: [byId.one] });
      assert.deepEqual((await store.listMessages([inQueue('q')], 10)).map((m) => m.status), ['PendingSuspend', 'Suspended', 'Ready']);
      assert.equal(await store.recordDelivery(active!.itemId, [{ position: 0, result: 'deferred', reply: '451 later' }], 5000, 0), 'suspend');
      assert.deepEqual((await store.listMessages([inQueue('q')], 10)).map((m) => m.status), ['Suspended', 'Suspended', 'Ready']);
      assert.deepEqual(await store.claimDeliveries('q', 10, 0).then((items) => items.map((i) => i.message.subject)), ['three'], 'suspended items are not handed out');

      const resumed = await store.resumeItems([byId.one!, byId.two!]);
      assert.deepEqual(resumed, { resumed: 2, queues: [{ name: 'q', route: 'q' }], resubmitted: 0 });
      const { claimed, pending } = await store.claimRemovals([byId.one!, byId.three!], true);
      assert.deepEqual([claimed.map((i) => i.message.subject), pending], [['one'], [byId.three]], '"three" was being delivered: PendingRemove');
      assert.equal(claimed[0]!.pendingAction, 'remove-ndr');
      await store.recordDelivery(claimed[0]!.itemId, [{ position: 0, result: 'failed', reply: '550 removed' }], 0, 0);
      assert.equal(await store.getMessage(one!.id), undefined);
    });

    it('keeps queue suspension, queue Retry state and listener suspension (MG-2, DL-3, IN-7)', async (t) => {
      const { store, restart } = await fresh(t);
      const [one] = await claimedThree(store);
      await store.routeMessages([route(one!, 'q')]);
      assert.equal(await store.setQueueSuspended('q', true), true);
      assert.equal(await store.setQueueSuspended('nowhere', true), false);
      await store.setQueueRetry('q', { at: 5000, since: 1000, failures: 3, lastError: '451 down' });
      await store.setListenerSuspended('inbound', true);
      const reopened = await restart();
      const q = (await reopened.listQueues()).find((r) => r.name === 'q')!;
      assert.deepEqual([q.suspended, q.retry], [true, { at: 5000, since: 1000, failures: 3, lastError: '451 down' }]);
      assert.deepEqual(await reopened.suspendedListeners(), ['inbound']);
      assert.equal(await reopened.dropQueueIfEmpty('q'), false, 'not empty');
    });

    it('counts crashes only for work in hand and moves a message to Poison at the threshold, alone (ST-3, QU-6)', async (t) => {
      const { store, restart } = await fresh(t);
      await claimedThree(store); // the categorizer had all three in hand
      let current = await restart();
      // each suspect is categorized alone now
      const [suspect] = await current.claimSubmission(10);
      const again = await current.claimSubmission(10);
      assert.equal(again.length, 1, 'the next suspect, alone too');
      await current.routeMessages([route(again[0]!.message, 'q')]); // routed without a crash: cleared
      current = await restart(); // "suspect" crashed a second time; the third was never claimed after the first crash
      const poisoned = await current.listMessages([inQueue(POISON_QUEUE)], 10);
      assert.deepEqual(poisoned.map((m) => [m.id, m.status]), [[suspect!.message.id, 'Suspended']]);
      assert.match(poisoned[0]!.lastError!, /stopped 2 times while this message was being categorized/);
      const rest = await current.claimSubmission(10);
      assert.equal(rest.length, 1, 'the third is still a suspect (once) and comes alone');
      await current.routeMessages([route(rest[0]!.message, 'q')]);

      // delivery: only the item whose attempt began counts
      const [first, second] = await current.claimDeliveries('q', 10, 0);
      await current.beginAttempt(first!.itemId);
      current = await restart();
      const [firstAgain] = await current.claimDeliveries('q', 1, 0);
      assert.equal(firstAgain!.itemId, first!.itemId);
      await current.beginAttempt(firstAgain!.itemId);
      current = await restart();
      const inPoison = await current.listMessages([inQueue(POISON_QUEUE)], 10);
      assert.deepEqual(inPoison.map((m) => m.id).sort(), [suspect!.message.id, first!.message.id].sort());
      assert.match(inPoison.find((m) => m.id === first!.message.id)!.lastError!, /being delivered/);
      assert.deepEqual((await current.listMessages([inQueue('q')], 10)).map((m) => m.id), [second!.message.id], 'claimed but never attempted: not counted');
      assert.deepEqual(await current.claimExpired(Number.MAX_SAFE_INTEGER, 10).then((items) => items.map((i) => i.queue)), ['q'], 'Poison never expires');

      const resumed = await current.resumeItems([inPoison.find((m) => m.id === suspect!.message.id)!.itemId!]);
      assert.equal(resumed.resubmitted, 1);
      assert.deepEqual((await current.claimSubmission(10)).map((c) => c.message.id), [suspect!.message.id], 'back through routing');
    });
  });
}
