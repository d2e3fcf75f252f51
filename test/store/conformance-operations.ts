// The queue store conformance suite, second part: the operations above
// intake, which every backend must also pass. Routing into items (QU-4),
// FIFO hand-out and attempts (QU-5, DL-2), operator actions with their pending
// forms (MG-3), the state kept for queues and listeners, and what a start does
// with work that was in hand at a crash (ST-3, QU-6): a store closed with
// claims outstanding is, for its next open, a store whose process died.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { POISON_QUEUE, UNREACHABLE_QUEUE, type QueueStore } from '../../src/store/types.js';
import { HOUR, claimedMessages, freshStore, inQueue, route, routedMessages, storeMessage, type OpenStore } from './conformance.js';

const subjects = async (store: QueueStore, queue: string) => (await store.listMessages([inQueue(queue)], 10)).map((m) => m.subject);

export function describeQueueOperations(backend: string, open: OpenStore): void {
  describe(`QueueStore conformance, operations: ${backend}`, () => {
    it('routes a message into one item per next hop and hands items out oldest first (QU-4, QU-5, DL-2)', async (t) => {
      const { store } = await freshStore(t, open);
      const two = await storeMessage(store, Buffer.from('two hops\r\n'), { recipients: [{ address: 'a@example.com' }, { address: 'b@example.org' }] });
      const [claimed] = await store.claimSubmission(10, 0);
      assert.deepEqual(claimed!.positions, [0, 1]);
      await store.routeMessages([
        {
          messageId: two.id,
          claim: claimed!.claim,
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
      assert.equal(await store.beginAttempt(item!, 0), 'go');
      assert.equal(await store.recordDelivery(item!, [{ position: 0, result: 'deferred', reply: '451 later' }], 1000, 0), null);
      assert.deepEqual(await store.promoteDue(999), []);
      assert.deepEqual(await store.promoteDue(1000), [{ name: 'com', route: 'com' }]);
      const [again] = await store.claimDeliveries('com', 10, 1000);
      assert.equal(again!.attempts, 1);
      await store.recordDelivery(again!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 1000);
      const left = (await store.getMessage(two.id))!;
      assert.deepEqual(left.recipients.map((r) => r.status), ['Delivered', 'Ready'], 'the message stays for its Unreachable recipient');
    });

    it('hands items out FIFO across several claim calls, a released item first in line (QU-5)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['m1', 'm2', 'm3', 'm4']);
      const [first] = await store.claimDeliveries('q', 1, 0);
      const next = await store.claimDeliveries('q', 2, 0);
      assert.deepEqual([first!.message.subject, ...next.map((i) => i.message.subject)], ['m1', 'm2', 'm3']);
      assert.deepEqual(await store.releaseDeliveries([first!]), []);
      assert.deepEqual((await store.claimDeliveries('q', 10, 0)).map((i) => i.message.subject), ['m1', 'm4']);
    });

    it('lists by filter, suspends, resumes and removes items, with PendingSuspend for an item in an attempt (MG-3)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['one', 'two', 'three']);
      const listed = await store.listMessages([inQueue('q'), { column: 'subject', operator: '-like', value: 't*', text: true }], 10);
      assert.deepEqual(listed.map((m) => [m.subject, m.status]), [['two', 'Ready'], ['three', 'Ready']]);

      const [active] = await store.claimDeliveries('q', 1, 0); // "one" is in an attempt
      assert.equal(await store.beginAttempt(active!, 0), 'go');
      const byId = Object.fromEntries((await store.listMessages([inQueue('q')], 10)).map((m) => [m.subject, m.itemId!]));
      assert.deepEqual(await store.suspendItems([byId.one!, byId.two!]), { suspended: [byId.two], pending: [byId.one] });
      assert.deepEqual((await store.listMessages([inQueue('q')], 10)).map((m) => m.status), ['PendingSuspend', 'Suspended', 'Ready']);
      assert.equal(await store.recordDelivery(active!, [{ position: 0, result: 'deferred', reply: '451 later' }], 5000, 0), 'suspend');
      assert.deepEqual((await store.listMessages([inQueue('q')], 10)).map((m) => m.status), ['Suspended', 'Suspended', 'Ready']);
      assert.deepEqual(await store.claimDeliveries('q', 10, 0).then((items) => items.map((i) => i.message.subject)), ['three'], 'suspended items are not handed out');

      const resumed = await store.resumeItems([byId.one!, byId.two!]);
      assert.deepEqual(resumed, { resumed: 2, queues: [{ name: 'q', route: 'q' }], resubmitted: 0 });
      const { claimed, pending } = await store.claimRemovals([byId.one!, byId.three!], true, 0);
      assert.deepEqual([claimed.map((i) => i.message.subject), pending], [['one'], [byId.three]], '"three" was being delivered: PendingRemove');
      assert.equal(claimed[0]!.pendingAction, 'remove-ndr');
      await store.recordDelivery(claimed[0]!, [{ position: 0, result: 'failed', reply: '550 removed' }], 0, 0);
      assert.equal(await store.getMessage(claimed[0]!.message.id), undefined);
    });

    it('beginAttempt returns what an operator asked for after the claim, and releasing the item applies it (MG-3)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['kept', 'gone']);
      const [kept, gone] = await store.claimDeliveries('q', 10, 0);
      assert.deepEqual(await store.suspendItems([kept!.itemId]), { suspended: [], pending: [kept!.itemId] });
      assert.deepEqual((await store.claimRemovals([gone!.itemId], false, 0)).pending, [gone!.itemId]);
      assert.equal(await store.beginAttempt(kept!, 0), 'suspend');
      assert.equal(await store.beginAttempt(gone!, 0), 'remove');
      const toRemove = await store.releaseDeliveries([kept!, gone!]);
      assert.deepEqual(toRemove.map((i) => [i.itemId, i.claim, i.pendingAction]), [[gone!.itemId, gone!.claim, 'remove']], 'returned still claimed');
      assert.deepEqual((await store.listMessages([inQueue('q')], 10)).map((m) => [m.subject, m.status]), [['kept', 'Suspended'], ['gone', 'PendingRemove']]);
      assert.equal(await store.recordDelivery(toRemove[0]!, [{ position: 0, result: 'failed', reply: '550 removed' }], 0, 0), null);
      assert.deepEqual(await subjects(store, 'q'), ['kept']);
    });

    it('keeps queue suspension, queue Retry state with idleSince and listener suspension (MG-2, DL-3, DL-7, IN-7)', async (t) => {
      const { store, restart } = await freshStore(t, open);
      await routedMessages(store, 'q', ['one']);
      assert.equal(await store.setQueueSuspended('q', true), true);
      assert.equal(await store.setQueueSuspended('nowhere', true), false);
      const retry = { at: 5000, since: 1000, failures: 3, lastError: '451 down', idleSince: 400 };
      await store.setQueueRetry('q', retry);
      await store.setListenerSuspended('inbound', true);
      const reopened = await restart();
      const q = (await reopened.listQueues()).find((r) => r.name === 'q')!;
      assert.deepEqual([q.suspended, q.retry], [true, retry]);
      assert.deepEqual(await reopened.suspendedListeners(), ['inbound']);
      assert.equal(await reopened.dropQueueIfEmpty('q'), false, 'not empty');
      await reopened.setQueueRetry('q', null);
      assert.equal((await reopened.listQueues()).find((r) => r.name === 'q')!.retry, null);
    });

    it('claimDeliveries hands out nothing for a suspended queue, nor for one in Retry until its retry time (MG-2, DL-3)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['one']);
      await store.setQueueSuspended('q', true);
      assert.deepEqual(await store.claimDeliveries('q', 10, 0), []);
      await store.setQueueSuspended('q', false);
      await store.setQueueRetry('q', { at: 5000, since: 0, failures: 1, lastError: '421 busy', idleSince: 0 });
      assert.deepEqual(await store.claimDeliveries('q', 10, 4999), []);
      assert.deepEqual((await store.claimDeliveries('q', 10, 5000)).map((i) => i.message.subject), ['one']);
    });

    it('counts crashes only for work in hand and moves a message to Poison at the threshold, alone (ST-3, QU-6)', async (t) => {
      const { store, restart } = await freshStore(t, open);
      await claimedMessages(store, ['one', 'two', 'three']); // the categorizer had all three in hand
      let current = await restart();
      // each suspect is categorized alone now
      const [suspect] = await current.claimSubmission(10, 0);
      const again = await current.claimSubmission(10, 0);
      assert.equal(again.length, 1, 'the next suspect, alone too');
      await current.routeMessages([route(again[0]!, 'q')]); // routed without a crash: cleared
      current = await restart(); // "suspect" crashed a second time; the third was never claimed after the first crash
      const poisoned = await current.listMessages([inQueue(POISON_QUEUE)], 10);
      assert.deepEqual(poisoned.map((m) => [m.id, m.status]), [[suspect!.message.id, 'Suspended']]);
      assert.match(poisoned[0]!.lastError!, /stopped 2 times while this message was being categorized/);
      const rest = await current.claimSubmission(10, 0);
      assert.equal(rest.length, 1, 'the third is still a suspect (once) and comes alone');
      await current.routeMessages([route(rest[0]!, 'q')]);

      // delivery: only the item whose attempt began counts
      const [first, second] = await current.claimDeliveries('q', 10, 0);
      await current.beginAttempt(first!, 0);
      current = await restart();
      const [firstAgain] = await current.claimDeliveries('q', 1, 0);
      assert.equal(firstAgain!.itemId, first!.itemId);
      await current.beginAttempt(firstAgain!, 0);
      current = await restart();
      const inPoison = await current.listMessages([inQueue(POISON_QUEUE)], 10);
      assert.deepEqual(inPoison.map((m) => m.id).sort(), [suspect!.message.id, first!.message.id].sort());
      assert.match(inPoison.find((m) => m.id === first!.message.id)!.lastError!, /being delivered/);
      assert.deepEqual((await current.listMessages([inQueue('q')], 10)).map((m) => m.id), [second!.message.id], 'claimed but never attempted: not counted');
      assert.deepEqual(await current.claimExpired(Number.MAX_SAFE_INTEGER, 10).then((items) => items.map((i) => i.queue)), ['q'], 'Poison never expires');

      const resumed = await current.resumeItems([inPoison.find((m) => m.id === suspect!.message.id)!.itemId!]);
      assert.equal(resumed.resubmitted, 1);
      assert.deepEqual((await current.claimSubmission(10, 0)).map((c) => c.message.id), [suspect!.message.id], 'back through routing');
    });
  });
}
