// The SQLite store's writer thread. It owns the database connection and runs
// requests in batches: all writes that arrived while the previous batch was
// being committed go into one transaction with one fsync (group commit, ST-2),
// so the main thread's event loop never waits on the disk. A batch that only
// appends body chunks is committed without fsync: the WAL is append-only, so
// the fsync of the next commit makes those frames durable too, and a crash
// before it loses only bodies that were never acknowledged.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './database.js';
import { prepareWrites } from './enqueue.js';
import { isWrite, type Envelope, type Reply, type ReadRequest } from './protocol.js';
import { prepareReads } from './query.js';

const MAX_BATCH = 512;
/** Run a checkpoint once this much has been appended to the WAL since the last one. */
const CHECKPOINT_BYTES = 32 * 1024 * 1024;

const port = parentPort!;
const db = openDatabase((workerData as { path: string }).path);
const write = prepareWrites(db);
const read = prepareReads(db);

let pending: Envelope[] = [];
let scheduled = false;
let closing = false;
let walBytes = 0;
const counters = { transactions: 0, syncedTransactions: 0, messagesCommitted: 0 };

port.on('message', (envelope: Envelope) => {
  pending.push(envelope);
  if (!scheduled) {
    scheduled = true;
    setImmediate(runBatch);
  }
});

function runBatch(): void {
  scheduled = false;
  const batch = pending.slice(0, MAX_BATCH);
  pending = pending.slice(batch.length);
  const writes = batch.filter((e) => isWrite(e.request));
  const replies = writes.length > 0 ? commitWrites(writes) : [];
  for (const reply of replies) port.postMessage(reply);
  for (const envelope of batch) {
    if (!isWrite(envelope.request)) port.postMessage(answerRead(envelope.requestId, envelope.request));
  }
  if (pending.length > 0 && !closing) {
    scheduled = true;
    setImmediate(runBatch);
  }
}

function commitWrites(writes: Envelope[]): Reply[] {
  const durable = writes.some((e) => e.request.op === 'commit');
  const replies: Reply[] = [];
  try {
    db.pragma(`synchronous = ${durable ? 'FULL' : 'OFF'}`);
    db.transaction(() => {
      for (const { requestId, request } of writes) {
        try {
          // each request in its own savepoint: one bad request fails alone
          const result = db.transaction(() => write(request as Parameters<typeof write>[0]))();
          replies.push({ requestId, ok: true, result });
          if (request.op === 'chunk' || request.op === 'commit') walBytes += (request.data?.length ?? 0) + 1024;
        } catch (error) {
          replies.push(failure(requestId, error));
        }
      }
    })();
  } catch (error) {
    // the COMMIT itself failed (disk full, I/O error): nothing in this batch is stored
    return writes.map((e) => failure(e.requestId, error));
  } finally {
    db.pragma('synchronous = FULL');
  }
  counters.transactions++;
  if (durable) {
    counters.syncedTransactions++;
    counters.messagesCommitted += writes.filter((e, i) => e.request.op === 'commit' && replies[i]?.ok).length;
    if (walBytes >= CHECKPOINT_BYTES) checkpoint();
  }
  return replies;
}

function checkpoint(): void {
  db.pragma('wal_checkpoint(PASSIVE)');
  walBytes = 0;
}

function answerRead(requestId: number, request: ReadRequest): Reply {
  try {
    switch (request.op) {
      case 'get':
        return { requestId, ok: true, result: read.get(request.id) };
      case 'list':
        return { requestId, ok: true, result: read.list(request) };
      case 'readChunks':
        return { requestId, ok: true, result: read.readChunks(request) };
      case 'stats':
        return { requestId, ok: true, result: { ...read.totals(), ...counters } };
      case 'close':
        closing = true;
        checkpoint();
        db.close();
        return { requestId, ok: true, result: null };
    }
  } catch (error) {
    return failure(requestId, error);
  }
}

function failure(requestId: number, error: unknown): Reply {
  const err = error as { message?: string; code?: string };
  return { requestId, ok: false, error: err.message ?? String(error), code: err.code };
}
