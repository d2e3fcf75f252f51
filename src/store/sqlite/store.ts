// The SQLite QueueStore (ST-1): a thin client in the main thread that sends
// requests to the store worker and hands back promises. Bodies travel in
// chunks, so no message is ever whole in memory (IN-3).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Clock } from '../../clock.js';
import { newQueueId } from '../ids.js';
import {
  SUBMISSION_QUEUE,
  type Condition,
  type DeliveryItem,
  type ListedMessage,
  type PendingAction,
  type MessageWriter,
  type NewMessage,
  type QueueRecord,
  type QueueRef,
  type QueueRetry,
  type QueueStore,
  type RecipientOutcome,
  type RoutingDecision,
  type StoreStats,
  type StoredMessage,
} from '../types.js';
import { CHUNK_BYTES, type Envelope, type Op, type Reply, type RequestOf, type ResultOf, type WorkerOptions } from './protocol.js';

const READ_BATCH_BYTES = 1024 * 1024;

export class StoreError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface SqliteStoreOptions {
  dataDir: string;
  clock: Clock;
  /** QU-6: crashes with a message in hand before it moves to Poison. */
  poisonThreshold: number;
}

export async function openSqliteStore(options: SqliteStoreOptions): Promise<QueueStore> {
  await mkdir(options.dataDir, { recursive: true });
  const store = new SqliteQueueStore({ path: join(options.dataDir, 'queue.db'), poisonThreshold: options.poisonThreshold }, options.clock);
  await store.stats(); // resolves once the worker has migrated and recovered the database
  return store;
}

class SqliteQueueStore implements QueueStore {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextRequestId = 1;
  private failed: Error | undefined;

  constructor(
    workerData: WorkerOptions,
    private readonly clock: Clock,
  ) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData });
    this.worker.on('message', (reply: Reply) => this.settle(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new StoreError(`queue store worker exited (code ${code})`)));
  }

  private settle(reply: Reply): void {
    const waiter = this.waiting.get(reply.requestId);
    if (!waiter) return;
    this.waiting.delete(reply.requestId);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new StoreError(reply.error, reply.code));
  }

  private fail(error: Error): void {
    this.failed ??= error;
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
  }

  /** `transfer`: a buffer only this request uses, moved to the worker rather than copied. */
  private call<O extends Op>(request: RequestOf<O>, transfer?: Buffer | null): Promise<ResultOf<O>> {
    if (this.failed) return Promise.reject(this.failed);
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(requestId, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ requestId, request } as Envelope, transfer ? [transfer.buffer as ArrayBuffer] : []);
    });
  }

  receive(): MessageWriter {
    const id = newQueueId(this.clock.now());
    let buffered: Buffer[] = [];
    let bufferedBytes = 0;
    let size = 0;
    let nextSeq = 0;
    let inFlight: Promise<unknown> = Promise.resolve();
    let finished = false;

    // a fresh buffer of its own (not a slice of Node's shared pool), so it can be transferred
    const take = (): Buffer | null => {
      if (bufferedBytes === 0) return null;
      const data = Buffer.alloc(bufferedBytes);
      let offset = 0;
      for (const piece of buffered) offset += piece.copy(data, offset);
      buffered = [];
      bufferedBytes = 0;
      return data;
    };
    const finish = () => {
      if (finished) throw new StoreError(`message ${id} was already committed or aborted`);
      finished = true;
    };

    return {
      id,
      write: async (chunk: Buffer) => {
        if (finished) throw new StoreError(`message ${id} was already committed or aborted`);
        buffered.push(chunk);
        bufferedBytes += chunk.length;
        size += chunk.length;
        if (bufferedBytes < CHUNK_BYTES) return;
        // one chunk in flight while the next fills: bounded memory per message
        await inFlight;
        const data = take()!;
        inFlight = this.call({ op: 'chunk', id, seq: nextSeq++, data }, data);
      },
      commit: async (message: NewMessage): Promise<StoredMessage> => {
        finish();
        await inFlight;
        const data = take();
        const stored = await this.call({ op: 'commit', id, seq: nextSeq, data, size, message, queue: SUBMISSION_QUEUE }, data);
        return revive(stored);
      },
      abort: async () => {
        finish();
        buffered = [];
        await inFlight.catch(() => undefined);
        if (nextSeq > 0) await this.call({ op: 'abort', id });
      },
    };
  }

  async getMessage(id: string): Promise<StoredMessage | undefined> {
    const message = await this.call({ op: 'get', id });
    return message ? revive(message) : undefined;
  }

  async *readBody(id: string): AsyncIterable<Buffer> {
    for (let fromSeq: number | null = 0; fromSeq !== null; ) {
      const { chunks, nextSeq }: ResultOf<'readChunks'> = await this.call({ op: 'readChunks', id, fromSeq, maxBytes: READ_BATCH_BYTES });
      for (const chunk of chunks) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      fromSeq = nextSeq;
    }
  }

  async listQueue(queue: string, page: { after?: string; limit: number }): Promise<StoredMessage[]> {
    const messages = await this.call({ op: 'list', queue, after: page.after ?? null, limit: page.limit });
    return messages.map(revive);
  }

  stats(): Promise<StoreStats> {
    return this.call({ op: 'stats' });
  }

  pendingOperations(): number {
    return this.waiting.size;
  }

  async claimSubmission(limit: number): Promise<Array<{ message: StoredMessage; positions: number[] }>> {
    return (await this.call({ op: 'claimSubmission', limit })).map(({ message, positions }) => ({ message: revive(message), positions }));
  }

  resubmitQueue(queue: string): Promise<number> {
    return this.call({ op: 'resubmitQueue', queue });
  }

  async routeMessages(decisions: RoutingDecision[]): Promise<void> {
    await this.call({ op: 'routeMessages', decisions });
  }

  async claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]> {
    return (await this.call({ op: 'claimDeliveries', queue, limit, now })).map(reviveItem);
  }

  async claimExpired(now: number, limit: number): Promise<DeliveryItem[]> {
    return (await this.call({ op: 'claimExpired', now, limit })).map(reviveItem);
  }

  async takeDelayNotices(now: number, limit: number): Promise<DeliveryItem[]> {
    return (await this.call({ op: 'takeDelayNotices', now, limit })).map(reviveItem);
  }

  nextDeadline(): Promise<number | null> {
    return this.call({ op: 'nextDeadline' });
  }

  async beginAttempt(itemId: number): Promise<void> {
    await this.call({ op: 'beginAttempt', itemId });
  }

  recordDelivery(itemId: number, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null> {
    return this.call({ op: 'recordDelivery', itemId, outcomes, retryAt, now });
  }

  async releaseDeliveries(itemIds: number[]): Promise<DeliveryItem[]> {
    return (await this.call({ op: 'releaseDeliveries', itemIds })).map(reviveItem);
  }

  promoteDue(now: number): Promise<QueueRef[]> {
    return this.call({ op: 'promoteDue', now });
  }

  nextDueTime(): Promise<number | null> {
    return this.call({ op: 'nextDueTime' });
  }

  listQueues(): Promise<QueueRecord[]> {
    return this.call({ op: 'listQueues' });
  }

  dropQueueIfEmpty(queue: string): Promise<boolean> {
    return this.call({ op: 'dropQueueIfEmpty', queue });
  }

  async listMessages(conditions: Condition[], limit: number): Promise<ListedMessage[]> {
    return this.call({ op: 'listMessages', conditions, limit });
  }

  suspendItems(itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }> {
    return this.call({ op: 'suspendItems', itemIds });
  }

  resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }> {
    return this.call({ op: 'resumeItems', itemIds });
  }

  async claimRemovals(itemIds: number[], ndr: boolean): Promise<{ claimed: DeliveryItem[]; pending: number[] }> {
    const { claimed, pending } = await this.call({ op: 'claimRemovals', itemIds, ndr });
    return { claimed: claimed.map(reviveItem), pending };
  }

  async claimPendingRemovals(limit: number): Promise<DeliveryItem[]> {
    return (await this.call({ op: 'claimPendingRemovals', limit })).map(reviveItem);
  }

  setQueueSuspended(queue: string, suspended: boolean): Promise<boolean> {
    return this.call({ op: 'setQueueSuspended', queue, suspended });
  }

  async setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void> {
    await this.call({ op: 'setQueueRetry', queue, retry });
  }

  retryQueue(queue: string): Promise<number> {
    return this.call({ op: 'retryQueue', queue });
  }

  suspendedListeners(): Promise<string[]> {
    return this.call({ op: 'suspendedListeners' });
  }

  async setListenerSuspended(name: string, suspended: boolean): Promise<void> {
    await this.call({ op: 'setListenerSuspended', name, suspended });
  }

  async close(): Promise<void> {
    if (this.failed) return;
    await this.call({ op: 'close' });
    this.failed = new StoreError('queue store is closed');
    await this.worker.terminate();
  }
}

const reviveItem = (item: DeliveryItem): DeliveryItem => ({
  ...item,
  message: revive(item.message),
  ...(item.body ? { body: Buffer.from(item.body.buffer, item.body.byteOffset, item.body.byteLength) } : {}),
});

/** Buffers arrive from the worker as plain Uint8Arrays. */
function revive(message: StoredMessage): StoredMessage {
  return { ...message, traceHeader: Buffer.from(message.traceHeader.buffer, message.traceHeader.byteOffset, message.traceHeader.byteLength) };
}
