// The queue store conformance suite, deadlines: expiry (DL-5) and delay
// notices (DL-6). A notice stays due until the commit that enqueues it, so a
// crash can neither lose one nor clear one that was never sent; nextDeadline,
// which the deadline alarm is set from, names only what claimExpired or
// dueDelayNotices would hand out at that time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { QueueStore } from '../../src/store/types.js';
import { freshStore, message, routedMessages, type OpenStore } from './conformance.js';

const due = async (store: QueueStore, now: number, limit = 10, after = 0) =>
  (await store.dueDelayNotices(now, limit, after)).map((i) => i.message.subject);

export function describeQueueDeadlines(backend: string, open: OpenStore): void {
  describe(`QueueStore conformance, deadlines: ${backend}`, () => {
    it('keeps a delay notice due until the commit that enqueues the notice clears it (DL-6)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['late'], { delayAt: 1000 });
      assert.deepEqual(await due(store, 999), []);
      const [item] = await store.claimDeliveries('q', 1, 0);
      assert.deepEqual(await due(store, 1000), ['late'], 'due whether or not the item is claimed');
      const notice = store.receive();
      await notice.write(Buffer.from('Subject: delayed\r\n\r\nstill trying\r\n'));
      assert.deepEqual(await due(store, 1000), ['late'], 'not before the notice is committed');
      await notice.commit(message({ mailFrom: '', subject: 'notice' }), { clearsDelayNoticeOf: [item!.itemId] });
      assert.deepEqual(await due(store, 1000), []);
      assert.equal((await store.getMessage(notice.id))!.subject, 'notice');
      assert.equal((await store.getMessage(item!.message.id))!.recipients[0]!.status, 'Ready', 'the item itself is untouched');
    });

    it('pages through due notices in item order and clears them without a report (DL-6)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['a', 'b', 'c'], { delayAt: 1000 });
      const firstPage = await store.dueDelayNotices(1000, 2, 0);
      assert.deepEqual(firstPage.map((i) => i.message.subject), ['a', 'b']);
      assert.ok(firstPage[0]!.itemId < firstPage[1]!.itemId);
      assert.deepEqual(await due(store, 1000, 2, firstPage[1]!.itemId), ['c']);
      const [a, , c] = await store.dueDelayNotices(1000, 10, 0);
      await store.clearDelayNotices([a!.itemId, c!.itemId]);
      assert.deepEqual(await due(store, Number.MAX_SAFE_INTEGER), ['b']);
      assert.equal(await store.nextDeadline(), 1000);
    });

    it('points nextDeadline only at what claimExpired or dueDelayNotices hands out (DL-5, DL-6)', async (t) => {
      const { store } = await freshStore(t, open);
      await routedMessages(store, 'q', ['expires'], { expiresAt: 5000, delayAt: null });
      await routedMessages(store, 'q', ['noticed'], { expiresAt: 9000, delayAt: 3000 });
      assert.equal(await store.nextDeadline(), 3000);
      assert.deepEqual(await due(store, 3000), ['noticed']);
      const [noticed] = await store.dueDelayNotices(3000, 10, 0);
      await store.clearDelayNotices([noticed!.itemId]);
      assert.equal(await store.nextDeadline(), 5000);
      const [claimed] = await store.claimDeliveries('q', 1, 0); // "expires" is being delivered: its expiry waits
      assert.equal(claimed!.message.subject, 'expires');
      assert.equal(await store.nextDeadline(), 9000);
      const expired = await store.claimExpired(9000, 10);
      assert.deepEqual(expired.map((i) => i.message.subject), ['noticed'], 'a claimed item is not handed out for expiry');
      assert.equal(await store.nextDeadline(), null, 'nothing unclaimed is left to expire');
      assert.equal(await store.recordDelivery(expired[0]!, [{ position: 0, result: 'failed', reply: '4.4.7 expired' }], 0, 9000), null);
      await store.releaseDeliveries([claimed!]);
      assert.equal(await store.nextDeadline(), 5000);
      assert.deepEqual((await store.claimExpired(5000, 10)).map((i) => i.message.subject), ['expires']);
    });
  });
}
