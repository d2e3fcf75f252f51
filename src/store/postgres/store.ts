// The PostgreSQL QueueStore (ST-1): several Sluice nodes share one queue in
// one database. Each operation is a few statements on a pooled connection;
// acceptances are group-committed on a connection of their own. Opening
// migrates the schema (refusing one newer than this Sluice), sweeps the bodies
// this node was receiving when it stopped, and takes back the claims of this
// node's earlier process (ST-3, QU-6); other nodes' claims are taken back only
// once their lease expires (reclaimExpiredLeases).
import type pg from 'pg';
import type { Clock } from '../../clock.js';
import { newQueueId } from '../ids.js';
import type { AttemptStart, ClaimRef, Condition, DeliveryItem, ListedMessage, MessageWriter, PendingAction, QueueRecord, QueueRef, QueueRetry, QueueStore, RecipientOutcome, RoutingDecision, StoreStats, StoredMessage } from '../types.js';
import { dropBody, readChunks, sweepPartialBodies, writeChunk } from './bodies.js';
import { createPool, type ConnectionOptions } from './connection.js';
import * as deadlines from './deadlines.js';
import * as delivery from './delivery.js';
import { GroupCommitter } from './group-commit.js';
import { migrate } from './migrations.js';
import * as operator from './operator.js';
import * as reads from './query.js';
import { nextLeaseExpiry, reclaim } from './recovery.js';
import * as routing from './routing.js';
import { PostgresWriter, type BodySink } from './writer.js';

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
  private readonly node: string;
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
    this.sink = {
      chunk: (id, seq, data) => this.write(() => writeChunk(pool, this.node, id, seq, data)),
      accept: (acceptance) => this.track(() => this.committer.commit(acceptance)),
      drop: (id) => this.write(() => dropBody(pool, id)),
    };
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
    return this.write(() => routing.routeMessages(this.pool, decisions));
  }

  releaseSubmission(claims: Array<{ messageId: string; claim: number }>): Promise<void> {
    return this.write(() => routing.releaseSubmission(this.pool, claims));
  }

  resubmitQueue(queue: string): Promise<number> {
    return this.write(() => routing.resubmitQueue(this.pool, queue));
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

  releaseDeliveries(refs: ClaimRef[]): Promise<DeliveryItem[]> {
    return this.write(() => delivery.releaseDeliveries(this.pool, refs));
  }

  renewLeases(refs: ClaimRef[], now: number): Promise<ClaimRef[]> {
    return this.write(() => delivery.renewLeases(this.pool, this, refs, now));
  }

  reclaimExpiredLeases(now: number): Promise<QueueRef[]> {
    return this.write(() => reclaim(this.pool, this.options.poisonThreshold, now));
  }

  nextLeaseExpiry(): Promise<number | null> {
    return this.track(() => nextLeaseExpiry(this.pool));
  }

  promoteDue(now: number): Promise<QueueRef[]> {
    return this.write(() => delivery.promoteDue(this.pool, now));
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

  resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }> {
    return this.write(() => operator.resumeItems(this.pool, itemIds));
  }

  claimRemovals(itemIds: number[], ndr: boolean, now: number): Promise<{ claimed: DeliveryItem[]; pending: number[] }> {
    return this.write(() => operator.claimRemovals(this.pool, this, itemIds, ndr, now));
  }

  claimPendingRemovals(limit: number, now: number): Promise<DeliveryItem[]> {
    return this.write(() => operator.claimPendingRemovals(this.pool, this, limit, now));
  }

  setQueueSuspended(queue: string, suspended: boolean): Promise<boolean> {
    return this.write(() => operator.setQueueSuspended(this.pool, queue, suspended));
  }

  setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void> {
    return this.write(() => operator.setQueueRetry(this.pool, queue, retry));
  }

  retryQueue(queue: string): Promise<number> {
    return this.write(() => operator.retryQueue(this.pool, queue));
  }

  suspendedListeners(): Promise<string[]> {
    return this.track(() => operator.suspendedListeners(this.pool, this.node));
  }

  setListenerSuspended(name: string, suspended: boolean): Promise<void> {
    return this.write(() => operator.setListenerSuspended(this.pool, this.node, name, suspended));
  }

  close(): Promise<void> {
    this.closed ??= this.committer.close().then(() => this.pool.end());
    return this.closed;
  }
}
