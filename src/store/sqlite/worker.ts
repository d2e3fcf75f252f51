// The SQLite store's writer thread. It owns the database connection and runs
// requests in batches: all acceptances that arrived while the previous batch
// was being committed go into one transaction with one fsync (group commit,
// ST-2), so the main thread's event loop never waits on the disk. The other
// writes of a batch (body chunks, routing, delivery bookkeeping, claims) go
// first, in a transaction of their own with synchronous=NORMAL, and are
// answered at once: they must not wait for the disk on behalf of new mail.
// NORMAL commits without fsync, yet in WAL mode it never corrupts the database
// (OFF may, on power loss, as SQLite documents): SQLite still syncs the WAL
// before each checkpoint. The WAL is append-only, so the next fsync makes
// their frames durable too; a crash of the process loses none of them (the OS
// has them), and a crash of the machine before that fsync rolls back a suffix
// of them, which only redoes work (at-least-once). No request can depend on an
// acceptance in its own batch: the client acts on a message only once its
// commit is answered.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './database.js';
import { prepareDeadlines } from './deadlines.js';
import { prepareDelivery } from './delivery.js';
import { prepareEnqueue } from './enqueue.js';
import { prepareLeases } from './leases.js';
import { isWrite, needsSync, type Envelope, type Op, type Reply, type Request, type RequestOf, type ResultOf, type WorkerOptions } from './protocol.js';
import { prepareOperator } from './operator.js';
import { prepareReads } from './query.js';
import { prepareReclaim } from './recovery.js';
import { prepareRouting } from './routing.js';

const MAX_BATCH = 512;
/** Run a checkpoint once the WAL has grown by this much since the last one. */
const CHECKPOINT_BYTES = 32 * 1024 * 1024;
/** ...or once this long has passed with writes, so the WAL stays bounded whatever the write pattern. */
const CHECKPOINT_INTERVAL_MS = 1000;

const port = parentPort!;
const options = workerData as WorkerOptions;
const db = openDatabase(options);
const leases = prepareLeases(db, options);
const { reclaim, nextLeaseExpiry } = prepareReclaim(db, options.poisonThreshold);
const { totals, ...reads } = prepareReads(db);
const handlers: { [O in Op]: (request: RequestOf<O>) => ResultOf<O> } = {
  ...prepareEnqueue(db),
  ...prepareRouting(db, leases),
  ...prepareDelivery(db, leases),
  ...prepareDeadlines(db, leases),
  ...prepareOperator(db, leases),
  ...reads,
  reclaimExpiredLeases: ({ now }) => reclaim(now),
  nextLeaseExpiry,
  stats: () => ({ ...totals(), ...counters, reusableBytes: freeBytesInFile() }),
  close: () => {
    closing = true;
    checkpoint();
    db.close();
    return null;
  },
};
const pageSize = db.pragma('page_size', { simple: true }) as number;
const freeBytesInFile = () => (db.pragma('freelist_count', { simple: true }) as number) * pageSize;
const handle = (request: Request): unknown => (handlers[request.op] as (r: Request) => unknown)(request);

let pending: Envelope[] = [];
let scheduled = false;
let closing = false;
let walBytes = 0;
let writesSinceCheckpoint = 0;
// I/O pacing inside the store, not a domain timer: wall time is right here
let lastCheckpoint = Date.now();
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
  for (const durable of [false, true]) {
    const these = writes.filter((e) => needsSync(e.request) === durable);
    if (these.length > 0) for (const reply of commitWrites(these, durable)) port.postMessage(reply);
  }
  for (const envelope of batch) {
    if (!isWrite(envelope.request)) port.postMessage(answer(envelope.requestId, envelope.request));
  }
  // after the replies, so no acceptance waits for it; under NORMAL as under FULL, SQLite syncs the
  // WAL before copying it back and the database after, so no frame leaves the WAL before it is durable
  const due = walBytes >= CHECKPOINT_BYTES || (writesSinceCheckpoint > 0 && Date.now() - lastCheckpoint >= CHECKPOINT_INTERVAL_MS);
  if (due && !closing) checkpoint();
  if (pending.length > 0 && !closing) {
    scheduled = true;
    setImmediate(runBatch);
  }
}

function commitWrites(writes: Envelope[], durable: boolean): Reply[] {
  const replies: Reply[] = [];
  try {
    setSynchronous(durable ? 'FULL' : 'NORMAL');
    db.transaction(() => {
      for (const { requestId, request } of writes) {
        try {
          // each request in its own savepoint: one bad request fails alone
          const result = db.transaction(() => handle(request))();
          replies.push({ requestId, ok: true, result });
          // body bytes are the bulk; other writes are caught by the interval
          walBytes += request.op === 'chunk' || request.op === 'commit' ? (request.data?.length ?? 0) + 1024 : 256;
          writesSinceCheckpoint++;
        } catch (error) {
          replies.push(failure(requestId, error));
        }
      }
    })();
  } catch (error) {
    // the COMMIT itself failed (disk full, I/O error): nothing in this batch is stored
    return writes.map((e) => failure(e.requestId, error));
  }
  counters.transactions++;
  if (durable) {
    counters.syncedTransactions++;
    counters.messagesCommitted += writes.filter((e, i) => e.request.op === 'commit' && replies[i]?.ok).length;
  }
  return replies;
}

let synchronous: 'FULL' | 'NORMAL' = 'FULL';
function setSynchronous(mode: 'FULL' | 'NORMAL'): void {
  if (mode === synchronous) return;
  db.prepare(`PRAGMA synchronous = ${mode}`).run();
  synchronous = mode;
}

function checkpoint(): void {
  db.pragma('wal_checkpoint(PASSIVE)');
  walBytes = 0;
  writesSinceCheckpoint = 0;
  lastCheckpoint = Date.now();
}

function answer(requestId: number, request: Request): Reply {
  try {
    return { requestId, ok: true, result: handle(request) };
  } catch (error) {
    return failure(requestId, error);
  }
}

function failure(requestId: number, error: unknown): Reply {
  const err = error as { message?: string; code?: string };
  return { requestId, ok: false, error: err.message ?? String(error), code: err.code };
}
