// The cluster behaviour of the PostgreSQL store with the delivery engine's
// claim keeper (ST-5, QU-6, DL-1, MG-2): a node that holds nothing itself
// still sweeps, and takes over the claims of a node that went silent, the
// begun attempt counted as a crash; the other nodes hear of new work and of
// queue state changes (LISTEN/NOTIFY), never of their own; connection slots
// hold for the cluster and a dead node's slots come free when their lease
// lapses.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { createClaimKeeper } from '../../src/delivery/claims.js';
import { createLogger } from '../../src/observability/logger.js';
import type { QueueRef, StoreEvent } from '../../src/store/types.js';
import { settle, waitUntil } from '../support/clock.js';
import { tempDir } from '../support/temp.js';
import { route, storeMessage } from './conformance.js';
import { NO_PG, openPg, withSchema } from './postgres-support.js';

const LEASE = 3_000;

async function twoNodes(t: TestContext) {
  const location = await tempDir(t);
  const clock = new TestClock();
  const a = await openPg(location, clock, { owner: 'a/1', leaseTimeout: LEASE });
  const b = await openPg(location, clock, { owner: 'b/1', leaseTimeout: LEASE });
  t.after(() => Promise.all([a.close(), b.close()]));
  return { location, clock, a, b };
}

describe('PostgreSQL store in a cluster: sweeps, wake-ups, connection slots', { skip: NO_PG }, () => {
  it('a node with no claims of its own takes over a silent node’s claims once their lease lapses, counting the crash (QU-6)', async (t) => {
    const { location, clock, a, b } = await twoNodes(t);
    await storeMessage(a, Buffer.from('x\r\n'));
    const claimed = await a.claimSubmission(10, clock.now());
    await a.routeMessages(claimed.map((c) => route(c, 'q')));
    const [item] = await a.claimDeliveries('q', 10, clock.now());
    assert.equal(await a.beginAttempt(item!, clock.now()), 'go');
    // a goes silent (no renewals); b holds nothing and only sweeps
    const reclaimed: QueueRef[] = [];
    const keeper = createClaimKeeper({ store: b, clock, logger: createLogger('silent'), onReclaimed: (queues) => reclaimed.push(...queues) });
    t.after(() => keeper.stop());
    keeper.watch();
    for (let step = 0; step < 40 && reclaimed.length === 0; step++) {
      clock.advance(250);
      await settle(30);
    }
    assert.deepEqual(reclaimed, [{ name: 'q', route: 'q' }]);
    const crashes = await withSchema(location, (db) => db.query<{ crash_count: number }>('SELECT crash_count FROM messages WHERE id = $1', [item!.message.id]));
    assert.equal(crashes.rows[0]?.crash_count, 1, 'the begun attempt counts a crash');
    const [again] = await b.claimDeliveries('q', 10, clock.now());
    assert.equal(again?.message.id, item!.message.id, 'handed out again');
    assert.equal((await b.getMessage(item!.message.id)) !== undefined, true);
    assert.equal(await a.recordDelivery(item!, [{ position: 0, result: 'delivered', reply: '250 ok' }], 0, clock.now()), 'lost', 'the late write is refused');
  });

  it('tells the other nodes of new work and queue state, never itself (LISTEN/NOTIFY)', async (t) => {
    const { clock, a, b } = await twoNodes(t);
    const atA: StoreEvent[] = [];
    const atB: StoreEvent[] = [];
    a.subscribe!((e) => atA.push(e));
    b.subscribe!((e) => atB.push(e));
    await settle(300); // both listening
    await storeMessage(a, Buffer.from('x\r\n'));
    await waitUntil(() => atB.some((e) => e.kind === 'submitted'), 5000);
    const claimed = await b.claimSubmission(10, clock.now());
    await b.routeMessages(claimed.map((c) => route(c, 'q')));
    await waitUntil(() => atA.some((e) => e.kind === 'ready'), 5000);
    assert.deepEqual(atA.find((e) => e.kind === 'ready'), { kind: 'ready', queues: [{ name: 'q', route: 'q' }] });
    await a.setQueueSuspended('q', true);
    await waitUntil(() => atB.some((e) => e.kind === 'queue'), 5000);
    assert.deepEqual(atB.find((e) => e.kind === 'queue'), { kind: 'queue', queue: 'q', route: 'q', suspended: true });
    await settle(200);
    assert.ok(!atA.some((e) => e.kind === 'submitted' || e.kind === 'queue'), 'a node does not hear its own events');
    assert.ok(!atB.some((e) => e.kind === 'ready'), 'a node does not hear its own events');
  });

  it('holds maxConnections for the cluster; a dead node’s slots come free after the lease timeout (DL-1)', async (t) => {
    const { clock, a, b } = await twoNodes(t);
    const now = clock.now();
    assert.equal(await a.acquireConnectionSlot!('q', 2, now), 0);
    assert.equal(await b.acquireConnectionSlot!('q', 2, now), 1);
    assert.equal(await a.acquireConnectionSlot!('q', 2, now), null, 'two slots for the cluster, both taken');
    await b.releaseConnectionSlot!('q', 1);
    assert.equal(await a.acquireConnectionSlot!('q', 2, now), 1);
    // a dies holding both: b gets none until their lease lapses
    await a.close();
    assert.equal(await b.acquireConnectionSlot!('q', 2, now + LEASE - 1), null);
    assert.equal(await b.acquireConnectionSlot!('q', 2, now + LEASE), 0);
  });
});
