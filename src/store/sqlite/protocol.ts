// Requests between the SQLite store client (main thread) and its worker thread.
// Writes are group-committed by the worker; reads are answered after the batch.
import type { NewMessage, StoreStats, StoredMessage } from '../types.js';

export type WriteRequest =
  | { op: 'chunk'; id: string; seq: number; data: Uint8Array }
  | { op: 'commit'; id: string; seq: number; data: Uint8Array | null; size: number; message: NewMessage; queue: string }
  | { op: 'abort'; id: string };

export type ReadRequest =
  | { op: 'get'; id: string }
  | { op: 'readChunks'; id: string; fromSeq: number; maxBytes: number }
  | { op: 'list'; queue: string; after: string | null; limit: number }
  | { op: 'stats' }
  | { op: 'close' };

export type Request = WriteRequest | ReadRequest;

export interface ResultOf {
  chunk: null;
  commit: StoredMessage;
  abort: null;
  get: StoredMessage | null;
  readChunks: { chunks: Uint8Array[]; nextSeq: number | null };
  list: StoredMessage[];
  stats: StoreStats;
  close: null;
}

export type Envelope = { requestId: number; request: Request };
export type Reply = { requestId: number; ok: true; result: unknown } | { requestId: number; ok: false; error: string; code?: string };

export function isWrite(request: Request): request is WriteRequest {
  return request.op === 'chunk' || request.op === 'commit' || request.op === 'abort';
}
