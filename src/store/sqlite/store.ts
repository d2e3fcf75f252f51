// The SQLite QueueStore (ST-1): a thin client in the main thread that sends
// requests to the store worker and hands back promises. Bodies travel in
// chunks, so no message is ever whole in memory (IN-3).
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../clock.js';
import { newQueueId } from '../ids.js';
import type {
  AttemptStart,
  ClaimRef,
  Condition,
  DeliveryItem,
  ListedMessage,
  MessageWriter,
  PendingAction,
  QueueRecord,
  QueueRef,
  QueueRetry,
  QueueStore,
  RecipientOutcome,
  RoutingDecision,
  StoreStats,
  StoredMessage,
} from '../types.js';
import { WorkerClient, revive, reviveItem } from './client.js';
import type { ResultOf } from './protocol.js';
import { createWriter } from './writer.js';

export { StoreError } from './client.js';

const READ_BATCH_BYTES = 1024 * 1024;

export interface SqliteStoreOptions {
  dataDir: string;
  clock: Clock;
  /** QU-6: crashes with a message in hand before it moves to Poison. */
  poisonThreshold: number;
  /** Who this store's claims belong to: node name and process (`relay1/12345`). */
  owner: string;
  /** How long a claim lasts unless renewed, in ms (ST-5). */
  leaseTimeout: number;
}

export async function openSqliteStore(options: SqliteStoreOptions): Promise<QueueStore> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  // the queue is mail: this user's alone (files of an older Sluice may have been made with a wider mode)
  const path = join(options.dataDir, 'queue.db');
  for (const file of [path, `${path}-wal`, `${path}-shm`]) await chmod(file, 0o600).catch(() => undefined);
  const { poisonThreshold, owner, leaseTimeout } = options;
  const store = new SqliteQueueStore({ path, poisonThreshold, owner, leaseTimeout }, options.clock);
  await store.stats(); // resolves once the worker has migrated and recovered the database
  return store;
}

// only the reference crosses to the worker, not the item a caller may pass as one
const refs = (items: ClaimRef[]): ClaimRef[] => items.map(({ itemId, claim }) => ({ itemId, claim }));

class SqliteQueueStore implements QueueStore {
  readonly owner: string;
  readonly leaseTimeout: number;
  private readonly client: WorkerClient;

  constructor(
    options: ConstructorParameters<typeof WorkerClient>[0],
    private readonly clock: Clock,
  ) {
    this.owner = options.owner;
    this.leaseTimeout = options.leaseTimeout;
    this.client = new WorkerClient(options);
  }

  receive(): MessageWriter {
    return createWriter(this.client, newQueueId(this.clock.now()));
  }

  async getMessage(id: string): Promise<StoredMessage | undefined> {
    const message = await this.client.call({ op: 'get', id });
    return message ? revive(message) : undefined;
  }

  async *readBody(id: string): AsyncIterable<Buffer> {
    for (let fromSeq: number | null = 0; fromSeq !== null; ) {
      const { chunks, nextSeq }: ResultOf<'readChunks'> = await this.client.call({ op: 'readChunks', id, fromSeq, maxBytes: READ_BATCH_BYTES });
      for (const chunk of chunks) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      fromSeq = nextSeq;
    }
  }

  async listQueue(queue: string, page: { after?: string; limit: number }): Promise<StoredMessage[]> {
    return (await this.client.call({ op: 'list', queue, after: page.after ?? null, limit: page.limit })).map(revive);
  }

  stats(): Promise<StoreStats> {
    return this.client.call({ op: 'stats' });
  }

  pendingOperations(): number {
    return this.client.pending;
  }

  async claimSubmission(limit: number, now: number): Promise<Array<{ message: StoredMessage; positions: number[]; claim: number }>> {
    return (await this.client.call({ op: 'claimSubmission', limit, now })).map((entry) => ({ ...entry, message: revive(entry.message) }));
  }

  async routeMessages(decisions: RoutingDecision[]): Promise<void> {
    await this.client.call({ op: 'routeMessages', decisions });
  }

  async releaseSubmission(claims: Array<{ messageId: string; claim: number }>): Promise<void> {
    await this.client.call({ op: 'releaseSubmission', claims: claims.map(({ messageId, claim }) => ({ messageId, claim })) });
  }

  resubmitQueue(queue: string): Promise<number> {
    return this.client.call({ op: 'resubmitQueue', queue });
  }

  async claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]> {
    return (await this.client.call({ op: 'claimDeliveries', queue, limit, now })).map(reviveItem);
  }

  beginAttempt(ref: ClaimRef, now: number): Promise<AttemptStart> {
    return this.client.call({ op: 'beginAttempt', ref: refs([ref])[0]!, now });
  }

  recordDelivery(ref: ClaimRef, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null | 'lost'> {
    return this.client.call({ op: 'recordDelivery', ref: refs([ref])[0]!, outcomes, retryAt, now });
  }

  async releaseDeliveries(items: ClaimRef[]): Promise<DeliveryItem[]> {
    return (await this.client.call({ op: 'releaseDeliveries', refs: refs(items) })).map(reviveItem);
  }

  renewLeases(items: ClaimRef[], now: number): Promise<ClaimRef[]> {
    return this.client.call({ op: 'renewLeases', refs: refs(items), now });
  }

  reclaimExpiredLeases(now: number): Promise<QueueRef[]> {
    return this.client.call({ op: 'reclaimExpiredLeases', now });
  }

  nextLeaseExpiry(): Promise<number | null> {
    return this.client.call({ op: 'nextLeaseExpiry' });
  }

  promoteDue(now: number): Promise<QueueRef[]> {
    return this.client.call({ op: 'promoteDue', now });
  }

  nextDueTime(): Promise<number | null> {
    return this.client.call({ op: 'nextDueTime' });
  }

  listQueues(): Promise<QueueRecord[]> {
    return this.client.call({ op: 'listQueues' });
  }

  dropQueueIfEmpty(queue: string): Promise<boolean> {
    return this.client.call({ op: 'dropQueueIfEmpty', queue });
  }

  async claimExpired(now: number, limit: number): Promise<DeliveryItem[]> {
    return (await this.client.call({ op: 'claimExpired', now, limit })).map(reviveItem);
  }

  async dueDelayNotices(now: number, limit: number, afterItemId: number): Promise<DeliveryItem[]> {
    return (await this.client.call({ op: 'dueDelayNotices', now, limit, afterItemId })).map(reviveItem);
  }

  async clearDelayNotices(itemIds: number[]): Promise<void> {
    await this.client.call({ op: 'clearDelayNotices', itemIds });
  }

  nextDeadline(): Promise<number | null> {
    return this.client.call({ op: 'nextDeadline' });
  }

  listMessages(conditions: Condition[], limit: number): Promise<ListedMessage[]> {
    return this.client.call({ op: 'listMessages', conditions, limit });
  }

  suspendItems(itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }> {
    return this.client.call({ op: 'suspendItems', itemIds });
  }

  resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }> {
    return this.client.call({ op: 'resumeItems', itemIds });
  }

  async claimRemovals(itemIds: number[], ndr: boolean, now: number): Promise<{ claimed: DeliveryItem[]; pending: number[] }> {
    const { claimed, pending } = await this.client.call({ op: 'claimRemovals', itemIds, ndr, now });
    return { claimed: claimed.map(reviveItem), pending };
  }

  async claimPendingRemovals(limit: number, now: number): Promise<DeliveryItem[]> {
    return (await this.client.call({ op: 'claimPendingRemovals', limit, now })).map(reviveItem);
  }

  setQueueSuspended(queue: string, suspended: boolean): Promise<boolean> {
    return this.client.call({ op: 'setQueueSuspended', queue, suspended });
  }

  async setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void> {
    await this.client.call({ op: 'setQueueRetry', queue, retry });
  }

  retryQueue(queue: string): Promise<number> {
    return this.client.call({ op: 'retryQueue', queue });
  }

  suspendedListeners(): Promise<string[]> {
    return this.client.call({ op: 'suspendedListeners' });
  }

  async setListenerSuspended(name: string, suspended: boolean): Promise<void> {
    await this.client.call({ op: 'setListenerSuspended', name, suspended });
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
