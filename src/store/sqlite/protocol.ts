// Requests between the SQLite store client (main thread) and its worker thread.
// Writes are group-committed by the worker; reads are answered after the batch.
import type {
  AttemptStart,
  ClaimRef,
  Condition,
  DeliveryItem,
  ListedMessage,
  PendingAction,
  NewMessage,
  QueueRecord,
  QueueRef,
  QueueRetry,
  RecipientOutcome,
  RoutingDecision,
  StoreStats,
  StoredMessage,
} from '../types.js';

/** What the worker is started with. */
export interface WorkerOptions {
  path: string;
  poisonThreshold: number;
  /** Who the claims belong to, and how long they last unless renewed (ST-5). */
  owner: string;
  leaseTimeout: number;
}

/** Body bytes the client gathers into one chunk; a body no larger than this is stored as one chunk. */
export const CHUNK_BYTES = 64 * 1024;

/** Every request: its fields, its result, and whether it writes. */
interface Operations {
  chunk: { request: { id: string; seq: number; data: Uint8Array }; result: null };
  commit: {
    request: { id: string; seq: number; data: Uint8Array | null; size: number; message: NewMessage; queue: string; clearsDelayNoticeOf: number[] };
    result: StoredMessage;
  };
  abort: { request: { id: string }; result: null };
  claimSubmission: { request: { limit: number; now: number }; result: Array<{ message: StoredMessage; positions: number[]; claim: number }> };
  releaseSubmission: { request: { claims: Array<{ messageId: string; claim: number }> }; result: null };
  resubmitQueue: { request: { queue: string }; result: number };
  routeMessages: { request: { decisions: RoutingDecision[] }; result: null };
  claimDeliveries: { request: { queue: string; limit: number; now: number }; result: DeliveryItem[] };
  beginAttempt: { request: { ref: ClaimRef; now: number }; result: AttemptStart };
  recordDelivery: { request: { ref: ClaimRef; outcomes: RecipientOutcome[]; retryAt: number; now: number }; result: PendingAction | null | 'lost' };
  claimExpired: { request: { now: number; limit: number }; result: DeliveryItem[] };
  dueDelayNotices: { request: { now: number; limit: number; afterItemId: number }; result: DeliveryItem[] };
  clearDelayNotices: { request: { itemIds: number[] }; result: null };
  nextDeadline: { request: Record<never, never>; result: number | null };
  releaseDeliveries: { request: { refs: ClaimRef[] }; result: DeliveryItem[] };
  renewLeases: { request: { refs: ClaimRef[]; now: number }; result: ClaimRef[] };
  reclaimExpiredLeases: { request: { now: number }; result: QueueRef[] };
  nextLeaseExpiry: { request: Record<never, never>; result: number | null };
  promoteDue: { request: { now: number }; result: QueueRef[] };
  dropQueueIfEmpty: { request: { queue: string }; result: boolean };
  get: { request: { id: string }; result: StoredMessage | null };
  readChunks: { request: { id: string; fromSeq: number; maxBytes: number }; result: { chunks: Uint8Array[]; nextSeq: number | null } };
  list: { request: { queue: string; after: string | null; limit: number }; result: StoredMessage[] };
  nextDueTime: { request: Record<never, never>; result: number | null };
  listQueues: { request: Record<never, never>; result: QueueRecord[] };
  stats: { request: Record<never, never>; result: StoreStats };
  close: { request: Record<never, never>; result: null };
  listMessages: { request: { conditions: Condition[]; limit: number }; result: ListedMessage[] };
  suspendItems: { request: { itemIds: number[] }; result: { suspended: number[]; pending: number[] } };
  resumeItems: { request: { itemIds: number[] }; result: { resumed: number; queues: QueueRef[]; resubmitted: number } };
  claimRemovals: { request: { itemIds: number[]; ndr: boolean; now: number }; result: { claimed: DeliveryItem[]; pending: number[] } };
  claimPendingRemovals: { request: { limit: number; now: number }; result: DeliveryItem[] };
  setQueueSuspended: { request: { queue: string; suspended: boolean }; result: boolean };
  retryQueue: { request: { queue: string }; result: number };
  setQueueRetry: { request: { queue: string; retry: QueueRetry | null }; result: null };
  suspendedListeners: { request: Record<never, never>; result: string[] };
  setListenerSuspended: { request: { name: string; suspended: boolean }; result: null };
}

export type Op = keyof Operations;
export type RequestOf<O extends Op> = { op: O } & Operations[O]['request'];
export type ResultOf<O extends Op> = Operations[O]['result'];
export type Request = { [O in Op]: RequestOf<O> }[Op];

export type Handlers<O extends Op> = { [K in O]: (request: RequestOf<K>) => ResultOf<K> };

const WRITES = new Set<Op>([
  'chunk',
  'commit',
  'abort',
  'claimSubmission',
  'routeMessages',
  'releaseSubmission',
  'resubmitQueue',
  'claimDeliveries',
  'beginAttempt',
  'recordDelivery',
  'releaseDeliveries',
  'renewLeases',
  'reclaimExpiredLeases',
  'promoteDue',
  'dropQueueIfEmpty',
  'claimExpired',
  'clearDelayNotices',
  'suspendItems',
  'resumeItems',
  'claimRemovals',
  'claimPendingRemovals',
  'setQueueSuspended',
  'retryQueue',
  'setQueueRetry',
  'setListenerSuspended',
]);

export const isWrite = (request: Request): boolean => WRITES.has(request.op);
/** Only an acceptance must be on disk before it is answered (IN-2); everything else may be redone after a crash. */
export const needsSync = (request: Request): boolean => request.op === 'commit';

export type Envelope = { requestId: number; request: Request };
export type Reply = { requestId: number; ok: true; result: unknown } | { requestId: number; ok: false; error: string; code?: string };
