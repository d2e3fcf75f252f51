// The main thread's end of the store worker: requests go out as messages and
// come back as promises; a worker that fails or exits fails every request
// still waiting, and every one after it.
import { Worker } from 'node:worker_threads';
import type { DeliveryItem, StoredMessage } from '../types.js';
import type { Envelope, Op, Reply, RequestOf, ResultOf, WorkerOptions } from './protocol.js';

export class StoreError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export class WorkerClient {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextRequestId = 1;
  private failed: Error | undefined;

  constructor(workerData: WorkerOptions) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData });
    this.worker.on('message', (reply: Reply) => this.settle(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new StoreError(`queue store worker exited (code ${code})`)));
  }

  /** Requests sent and not yet answered. */
  get pending(): number {
    return this.waiting.size;
  }

  /** `transfer`: a buffer only this request uses, moved to the worker rather than copied. */
  call<O extends Op>(request: RequestOf<O>, transfer?: Buffer | null): Promise<ResultOf<O>> {
    if (this.failed) return Promise.reject(this.failed);
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(requestId, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ requestId, request } as Envelope, transfer ? [transfer.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    if (this.failed) return;
    await this.call({ op: 'close' });
    this.failed = new StoreError('queue store is closed');
    await this.worker.terminate();
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
}

export const reviveItem = (item: DeliveryItem): DeliveryItem => ({
  ...item,
  message: revive(item.message),
  ...(item.body ? { body: Buffer.from(item.body.buffer, item.body.byteOffset, item.body.byteLength) } : {}),
});

/** Buffers arrive from the worker as plain Uint8Arrays. */
export function revive(message: StoredMessage): StoredMessage {
  return { ...message, traceHeader: Buffer.from(message.traceHeader.buffer, message.traceHeader.byteOffset, message.traceHeader.byteLength) };
}
