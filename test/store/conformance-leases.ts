// The queue store conformance suite, leases (ST-5): every claim is held until
// now + leaseTimeout, renewed while the work runs, and fenced by its token; a
// claim whose lease expired is taken back without a restart, exactly as a start
// takes back the claims of a process that died (QU-6, MG-3). Times are the
// `now` the caller passes, counted from 0 in lease timeouts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { POISON_QUEUE, type QueueStore } from '../../src/store/types.js';
import { claimedMessages, freshStore, inQueue, route, routedMessages, storeMessage, type OpenStore } from './conformance.js';

const statuses = async (store: QueueStore, queue: string) => (await store.listMessages([inQueue(queue)], 10)).map((m) => [m.subject, m.status]);

export function describeQueueLeases(backend: string, open: OpenStore): void {
  describe(`QueueStore conformance, leases: ${backend}`, () => {
    it('takes one new claim token per claim call, shared by the rows it claims (ST-5)', async (t) => {
      const { store } = await freshStore(t, open);
      const [a, b] = await claimedMessages(store, ['a', 'b']);
      assert.equal(a!.claim, b!.claim);
      await storeMessage(store, Buffer.from('c\r\n'), { subject: 'c' });
      const [c] = await store.claimSubmission(10, 0);
      await store.routeMessages([route(a!, 'q'), route(b!, 'q'), route(c!, 'q')]);
      const first = await store.claimDeliveries('q', 2, 0);
      assert.equal(first[0]!.claim, first[1]!.claim);
      const [third] = await store.claimDeliveries('q', 2, 0);
      const { claimed } = await store.claimRemovals([third!.itemId], false, 0); // claimed already: PendingRemove
      assert.deepEqual(claimed, []);
      await store.releaseDeliveries(first);
      const removal = await store.claimRemovals([first[0]!.itemId, first[1]!.itemId], false, 0);
      assert.equal(removal.claimed[0]!.claim, removal.claimed[1]!.claim);
      const tokens = [a!.claim, c!.claim, first[0]!.claim, third!.claim, removal.claimed[0]!.claim];
      assert.equal(new Set(tokens).size, tokens.length, `distinct tokens, got ${tokens}`);
    });

    it('fences a stale claim out of beginAttempt, recordDelivery, releaseDeliveries and renewLeases (ST-5)', async (t) => {
      const { store } = await freshStore(t, open);
      const lease = store.leaseTimeout;
      const [message] = await routedMessages(store, 'q', ['one']);
      const [stale] = await store.claimDeliveries('q', 1, 0);
      assert.deepEqual(await store.reclaimExpiredLeases(lease), [{ name: 'q', route: 'q' }]);
      // taken back and not claimed again: the old holder still changes nothing
      assert.equal(await store.recordDelivery(stale!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, lease), 'lost');
      assert.deepEqual(await statuses(store, 'q'), [['one', 'Ready']]);
      const [current] = await store.claimDeliveries('q', 1, lease);
      assert.equal(current!.itemId, stale!.itemId);
      assert.notEqual(current!.claim, stale!.claim);
      assert.equal(await store.beginAttempt(stale!, lease), 'lost');
      assert.equal(await store.recordDelivery(stale!, [{ position: 0, result: 'failed', reply: '550 no' }], 0, lease), 'lost');
      assert.deepEqual((await store.getMessage(message!.id))!.recipients.map((r) => [r.status, r.lastReply]), [['Ready', undefined]], 'recipients untouched');
      assert.deepEqual(await store.releaseDeliveries([stale!]), []);
      assert.deepEqual(await statuses(store, 'q'), [['one', 'Active']], 'the current claim stands');
      assert.deepEqual(await store.renewLeases([stale!, current!], lease), [{ itemId: stale!.itemId, claim: stale!.claim }]);
      // the current holder goes on
      assert.equal(await store.beginAttempt(current!, lease), 'go');
      assert.equal(await store.recordDelivery(current!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, lease), null);
      assert.equal(await store.getMessage(message!.id), undefined);
    });

    it('fences routeMessages and releaseSubmission by the message claim; releasing puts messages back Ready (ST-5)', async (t) => {
      const { store } = await freshStore(t, open);
      const [a, b] = await claimedMessages(store, ['a', 'b']);
      const stale = { messageId: a!.message.id, claim: a!.claim };
      await store.releaseSubmission([{ ...stale, claim: a!.claim + 1000 }]);
      assert.equal((await store.getMessage(a!.message.id))!.status, 'Active', 'a token never handed out releases nothing');
      await store.releaseSubmission([stale, { messageId: b!.message.id, claim: b!.claim }]);
      assert.deepEqual([(await store.getMessage(a!.message.id))!.status, (await store.getMessage(b!.message.id))!.status], ['Ready', 'Ready']);
      const again = await store.claimSubmission(10, 0);
      assert.deepEqual(again.map((c) => c.message.subject), ['a', 'b'], 'released untouched, in receipt order, no crash counted');
      await store.routeMessages([route(a!, 'q')]);
      await store.releaseSubmission([stale]);
      assert.deepEqual((await store.listQueue('Submission', { limit: 10 })).map((m) => [m.subject, m.status]), [['a', 'Active'], ['b', 'Active']]);
      await store.routeMessages(again.map((c) => route(c, 'q')));
      assert.deepEqual(await statuses(store, 'q'), [['a', 'Ready'], ['b', 'Ready']]);
    });

    it('never hands out a token again after a restart: a claim from before it is refused (ST-3, ST-5)', async (t) => {
      const { store, restart } = await freshStore(t, open);
      await routedMessages(store, 'q', ['one']);
      const [before] = await store.claimDeliveries('q', 1, 0);
      const reopened = await restart();
      const [after] = await reopened.claimDeliveries('q', 1, 0);
      assert.equal(after!.itemId, before!.itemId);
      assert.notEqual(after!.claim, before!.claim);
      assert.equal(await reopened.recordDelivery(before!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, 0), 'lost');
      assert.equal(await reopened.beginAttempt(after!, 0), 'go');
    });

    it('renewLeases keeps a claim past its original expiry (ST-5)', async (t) => {
      const { store } = await freshStore(t, open);
      const lease = store.leaseTimeout;
      await routedMessages(store, 'q', ['one']);
      const [item] = await store.claimDeliveries('q', 1, 0);
      assert.equal(await store.nextLeaseExpiry(), lease);
      assert.deepEqual(await store.renewLeases([item!], lease - 1), []);
      assert.equal(await store.nextLeaseExpiry(), 2 * lease - 1);
      assert.deepEqual(await store.reclaimExpiredLeases(2 * lease - 2), []);
      assert.deepEqual(await statuses(store, 'q'), [['one', 'Active']]);
      assert.deepEqual(await store.reclaimExpiredLeases(2 * lease - 1), [{ name: 'q', route: 'q' }]);
      assert.equal(await store.nextLeaseExpiry(), null);
    });

    it('reclaims an expired claim without a restart, counting a crash only for a begun attempt, Poison at the threshold (ST-5, QU-6)', async (t) => {
      const { store } = await freshStore(t, open);
      const lease = store.leaseTimeout;
      await routedMessages(store, 'q', ['attempted', 'waiting']);
      for (const round of [0, 1]) {
        const start = round * lease;
        const [attempted] = await store.claimDeliveries('q', 10, start);
        assert.equal(attempted!.message.subject, 'attempted');
        assert.equal(await store.beginAttempt(attempted!, start), 'go');
        assert.deepEqual(await store.reclaimExpiredLeases(start + lease - 1), [], 'nothing before the lease expires');
        assert.deepEqual(await store.reclaimExpiredLeases(start + lease), [{ name: 'q', route: 'q' }]);
        assert.equal(await store.recordDelivery(attempted!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, start + lease), 'lost');
      }
      assert.deepEqual(await statuses(store, 'q'), [['waiting', 'Ready']], 'claimed twice, never attempted: not counted');
      const poisoned = await store.listMessages([inQueue(POISON_QUEUE)], 10);
      assert.deepEqual(poisoned.map((m) => [m.subject, m.status]), [['attempted', 'Suspended']]);
      assert.match(poisoned[0]!.lastError!, /stopped 2 times while this message was being delivered/);
    });

    it('reclaims a message the categorizer held too long, counting it as a crash (ST-5, QU-6)', async (t) => {
      const { store } = await freshStore(t, open);
      const lease = store.leaseTimeout;
      const [held] = await claimedMessages(store, ['held', 'next']);
      assert.deepEqual(await store.reclaimExpiredLeases(lease), [], 'no delivery queue got anything');
      await store.routeMessages([route(held!, 'q')]);
      assert.deepEqual(await statuses(store, 'q'), [], 'the old decision is refused');
      const [suspect, ...others] = await store.claimSubmission(10, lease);
      assert.deepEqual([suspect!.message.subject, others.length], ['held', 0], 'a suspect now, categorized alone');
      assert.deepEqual(await store.reclaimExpiredLeases(2 * lease), []);
      assert.deepEqual((await store.listMessages([inQueue(POISON_QUEUE)], 10)).map((m) => m.subject), ['held']);
    });

    it('reclaim applies a pending suspend and leaves a pending removal for claimPendingRemovals (ST-5, MG-3)', async (t) => {
      const { store } = await freshStore(t, open);
      const lease = store.leaseTimeout;
      await routedMessages(store, 'q', ['suspend', 'remove', 'plain']);
      const [suspend, remove] = await store.claimDeliveries('q', 10, 0);
      await store.suspendItems([suspend!.itemId]);
      await store.claimRemovals([remove!.itemId], true, 0);
      assert.deepEqual(await store.reclaimExpiredLeases(lease), [{ name: 'q', route: 'q' }]);
      assert.deepEqual(await statuses(store, 'q'), [['suspend', 'Suspended'], ['remove', 'PendingRemove'], ['plain', 'Ready']]);
      assert.deepEqual((await store.claimDeliveries('q', 10, lease)).map((i) => i.message.subject), ['plain']);
      const [removal] = await store.claimPendingRemovals(10, lease);
      assert.deepEqual([removal!.message.subject, removal!.pendingAction], ['remove', 'remove-ndr']);
      assert.equal(await store.recordDelivery(removal!, [{ position: 0, result: 'failed', reply: '550 removed' }], 0, lease), null);
      assert.equal(await store.getMessage(removal!.message.id), undefined);
    });
  });
}
