// The PostgreSQL QueueStore (ST-1): several Sluice nodes share one queue in
// one database. Each operation is a few statements on a pooled connection;
// acceptances are group-committed on a connection of their own. Opening
// migrates the schema (refusing one newer than this Sluice), sweeps the bodies
// this node was receiving when it stopped, and takes back the claims of this
// node's earlier process (ST-3, QU-6); other nodes' claims are taken back only
// once their lease expires (reclaimExpiredLeases). What makes work for the
// other nodes is published to them by LISTEN/NOTIFY (events.ts), and a route's
// connections are counted cluster-wide by leased slots (slots.ts).
import type pg from 'pg';
import type { Clock } from '../../clock.js';
import { newQueueId } from '../ids.js';
import type { AttemptStart, ClaimRef, Condition, DeliveryItem, ListedMessage, MessageWriter, PendingAction, QueueRecord, QueueRef, QueueRetry, QueueStore, RecipientOutcome, RoutingDecision, StoreEvent, StoreStats, StoredMessage } from '../types.js';
import { dropBody, readChunks, sweepPartialBodies, writeChunk } from './bodies.js';
import { createPool, type ConnectionOptions } from './connection.js';
import * as deadlines from './deadlines.js';
import * as delivery from './delivery.js';
import { EventChannel } from './events.js';
import { GroupCommitter } from './group-commit.js';
import { migrate } from './migrations.js';
import * as operator from './operator.js';
import * as reads from './query.js';
import { nextLeaseExpiry, reclaim } from './recovery.js';
import * as routing from './routing.js';
import { ConnectionSlots, freeSlotsOf } from './slots.js';
import { PostgresWriter, type BodySink } from './writer.js';
import { queueRefs } from './lifecycle.js';

export interface PostgresStoreOptions extends ConnectionOptions {
  clock: Clock;
  /** QU-6: crashes with a message in hand before it moves to Poison. */
  poisonThreshold: number;
  /** Who this store's claims belong to: `<node>/<pid>`; the node name must be unique in the cluster. */
  owner: string;
  /** How long a claim lasts unless renewed, in ms (ST-5). */
  leaseTimeout: number;
}

/** `now` for which no lease has expired: at open only this node's own claims are taken back. */
const NO_EXPIRY = -1;

export async function openPostgresStore(options: PostgresStoreOptions): Promise<QueueStore> {
  const pool = createPool(options);
  try {
    const client = await pool.connect();
    try {
      await migrate(client, options.schema);
    } finally {
      client.release();
    }
    const node = nodeOf(options.owner);
    await sweepPartialBodies(pool, node);
    await reclaim(pool, options.poisonThreshold, NO_EXPIRY, node);
    await freeSlotsOf(pool, node);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  return new PostgresQueueStore(pool, options);
}

const nodeOf = (owner: string): string => owner.split('/')[0]!;

class PostgresQueueStore implements QueueStore {
  readonly owner: string;
  readonly leaseTimeout: number;
  readonly shared = true;
  private readonly node: string;
  private readonly events: EventChannel;
  private readonly slots: ConnectionSlots;
  private readonly committer: GroupCommitter;
  private readonly sink: BodySink;
  private inFlight = 0;
  private writes = 0;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: PostgresStoreOptions,
  ) {
    this.owner = options.owner;
    this.leaseTimeout = options.leaseTimeout;
    this.node = nodeOf(options.owner);
    this.committer = new GroupCommitter(options);
    this.events = new EventChannel(pool, options);
    this.slots = new ConnectionSlots(pool, options);
    this.sink = {
      chunk: (id, seq, data) => this.write(() => writeChunk(pool, this.node, id, seq, data)),
      accept: (acceptance) => this.track(() => this.committer.commit(acceptance)).then(this.publishing({ kind: 'submitted' })),
      drop: (id) => this.write(() => dropBody(pool, id)),
    };
  }

  /** Passes a result on, once it is known, publishing an event to the other nodes. */
  private publishing<T>(event: StoreEvent | ((result: T) => StoreEvent | undefined)): (result: T) => T {
    return (result) => {
      const e = typeof event === 'function' ? event(result) : event;
      if (e) this.events.publish(e);
      return result;
    };
  }

  subscribe(handler: (event: StoreEvent) => void): void {
    this.events.subscribe(handler);
  }

  acquireConnectionSlot(queue: string, max: number, now: number): Promise<number | null> {
    return this.track(() => this.slots.acquire(queue, max, now));
  }

  async releaseConnectionSlot(queue: string, slot: number): Promise<void> {
    await this.track(() => this.slots.release(queue, slot));
  }

  /** Counts a request while it is out (pendingOperations). */
  private async track<T>(request: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await request();
    } finally {
      this.inFlight--;
    }
  }

  private write<T>(request: () => Promise<T>): Promise<T> {
    this.writes++;
    return this.track(request);
  }

  receive(): MessageWriter {
    return new PostgresWriter(this.sink, newQueueId(this.options.clock.now()));
  }

  getMessage(id: string): Promise<StoredMessage | undefined> {
    return this.track(() => reads.getMessage(this.pool, id));
  }

  readBody(id: string): AsyncIterable<Buffer> {
    return readChunks(this.pool, id);
  }

  listQueue(queue: string, page: { after?: string; limit: number }): Promise<StoredMessage[]> {
    return this.track(() => reads.listQueue(this.pool, queue, page.after, page.limit));
  }

  async stats(): Promise<StoreStats> {
    const { messages, bodyBytes } = await this.track(() => reads.totals(this.pool));
    const { transactions, messagesCommitted } = this.committer.counters;
    return { messages, bodyBytes, transactions: transactions + this.writes, syncedTransactions: transactions, messagesCommitted };
  }

  pendingOperations(): number {
    return this.inFlight;
  }

  claimSubmission(limit: number, now: number) {
    return this.write(() => routing.claimSubmission(this.pool, this, limit, now));
  }

  routeMessages(decisions: RoutingDecision[]): Promise<void> {
    const queues = decisions.flatMap((d) => d.items.flatMap((i) => (i.route ? [{ name: i.queue, route: i.route }] : [])));
    return this.write(() => routing.routeMessages(this.pool, decisions)).then(this.publishing({ kind: 'ready', queues }));
  }

  releaseSubmission(claims: Array<{ messageId: string; claim: number }>): Promise<void> {
    return this.write(() => routing.releaseSubmission(this.pool, claims)).then(this.publishing({ kind: 'submitted' }));
  }

  resubmitQueue(queue: string): Promise<number> {
    return this.write(() => routing.resubmitQueue(this.pool, queue)).then(this.publishing((n) => (n > 0 ? { kind: 'submitted' } : undefined)));
  }

  claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]> {
    return this.write(() => delivery.claimDeliveries(this.pool, this, queue, limit, now));
  }

  beginAttempt(ref: ClaimRef, now: number): Promise<AttemptStart> {
    return this.write(() => delivery.beginAttempt(this.pool, ref, now));
  }

  recordDelivery(ref: ClaimRef, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null | 'lost'> {
    return this.write(() => delivery.recordDelivery(this.pool, ref, outcomes, retryAt, now));
  }

  async releaseDeliveries(refs: ClaimRef[]): Promise<DeliveryItem[]> {
    const { removals, ready } = await this.write(() => delivery.releaseDeliveries(this.pool, refs));
    this.events.publish({ kind: 'ready', queues: ready });
    return removals;
  }

  renewLeases(refs: ClaimRef[], now: number): Promise<ClaimRef[]> {
    return this.write(() => delivery.renewLeases(this.pool, this, refs, now));
  }

  async reclaimExpiredLeases(now: number): Promise<QueueRef[]> {
    const { queues, submitted } = await this.write(() => reclaim(this.pool, this.options.poisonThreshold, now));
    if (submitted > 0) this.events.publish({ kind: 'submitted' });
    this.events.publish({ kind: 'ready', queues });
    return queues;
  }

  nextLeaseExpiry(): Promise<number | null> {
    return this.track(() => nextLeaseExpiry(this.pool));
  }

  promoteDue(now: number): Promise<QueueRef[]> {
    return this.write(() => delivery.promoteDue(this.pool, now)).then(this.publishing((queues) => ({ kind: 'ready', queues })));
  }

  nextDueTime(): Promise<number | null> {
    return this.track(() => delivery.nextDueTime(this.pool));
  }

  listQueues(): Promise<QueueRecord[]> {
    return this.track(() => reads.listQueues(this.pool));
  }

  dropQueueIfEmpty(queue: string): Promise<boolean> {
    return this.write(() => delivery.dropQueueIfEmpty(this.pool, queue));
  }

  claimExpired(now: number, limit: number): Promise<DeliveryItem[]> {
    return this.write(() => deadlines.claimExpired(this.pool, this, now, limit));
  }

  dueDelayNotices(now: number, limit: number, afterItemId: number): Promise<DeliveryItem[]> {
    return this.track(() => deadlines.dueDelayNotices(this.pool, now, limit, afterItemId));
  }

  clearDelayNotices(itemIds: number[]): Promise<void> {
    return this.write(() => deadlines.clearDelayNotices(this.pool, itemIds));
  }

  nextDeadline(): Promise<number | null> {
    return this.track(() => deadlines.nextDeadline(this.pool));
  }

  listMessages(conditions: Condition[], limit: number): Promise<ListedMessage[]> {
    return this.track(() => operator.listMessages(this.pool, conditions, limit));
  }

  suspendItems(itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }> {
    return this.write(() => operator.suspendItems(this.pool, itemIds));
  }

  async resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }> {
    const result = await this.write(() => operator.resumeItems(this.pool, itemIds));
    if (result.resubmitted > 0) this.events.publish({ kind: 'submitted' });
    this.events.publish({ kind: 'ready', queues: result.queues });
    return result;
  }

  claimRemovals(itemIds: number[], ndr: boolean, now: number): Promise<{ claimed: DeliveryItem[]; pending: number[] }> {
    return this.write(() => operator.claimRemovals(this.pool, this, itemIds, ndr, now));
  }

  claimPendingRemovals(limit: number, now: number): Promise<DeliveryItem[]> {
    return this.write(() => operator.claimPendingRemovals(this.pool, this, limit, now));
  }

  async setQueueSuspended(queue: string, suspended: boolean): Promise<boolean> {
    const found = await this.write(() => operator.setQueueSuspended(this.pool, queue, suspended));
    if (found) this.events.publish({ kind: 'queue', queue, route: found.route, suspended });
    return found !== undefined;
  }

  async setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void> {
    const found = await this.write(() => operator.setQueueRetry(this.pool, queue, retry));
    if (found) this.events.publish({ kind: 'queue', queue, route: found.route, retry });
  }

  async retryQueue(queue: string): Promise<number> {
    const ready = await this.write(() => operator.retryQueue(this.pool, queue));
    if (ready > 0) this.events.publish({ kind: 'ready', queues: await queueRefs(this.pool, [queue]) });
    return ready;
  }

  suspendedListeners(): Promise<string[]> {
    return this.track(() => operator.suspendedListeners(this.pool, this.node));
  }

  setListenerSuspended(name: string, suspended: boolean): Promise<void> {
    return this.write(() => operator.setListenerSuspended(this.pool, this.node, name, suspended));
  }

  close(): Promise<void> {
    this.slots.stop();
    this.closed ??= Promise.all([this.committer.close(), this.events.close()]).then(() => this.pool.end());
    return this.closed;
  }
}
