// Store operations that read: one message, a page of a queue in FIFO order,
// body chunks in order, and totals.
import type { Database } from 'better-sqlite3';
import { SUBMISSION_QUEUE, UNREACHABLE_QUEUE, type QueueRecord, type StoreStats } from '../types.js';
import { prepareLifecycle } from './lifecycle.js';
import type { Handlers } from './protocol.js';
import type { MessageRow } from './rows.js';

interface QueueRow {
  name: string;
  delivery_type: string;
  route: string | null;
  message_count: number;
  suspended: number;
  retry_at: number | null;
  // set together with retry_at (setQueueRetry)
  retry_since: number;
  retry_failures: number;
  retry_error: string;
  idle_since: number;
}

type ReadOps = 'get' | 'list' | 'readChunks' | 'nextDueTime' | 'listQueues';

export function prepareReads(db: Database): Handlers<ReadOps> & { totals(): Pick<StoreStats, 'messages' | 'bodyBytes'> } {
  const { withRecipients } = prepareLifecycle(db);
  const byId = db.prepare<[string], MessageRow>('SELECT * FROM messages WHERE id = ?');
  const firstPage = db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE queue = ? ORDER BY seq LIMIT ?');
  const nextPage = db.prepare<[string, string, number], MessageRow>(
    'SELECT * FROM messages WHERE queue = ? AND seq > (SELECT seq FROM messages WHERE id = ?) ORDER BY seq LIMIT ?',
  );
  const chunksFrom = db.prepare<[string, number], { seq: number; data: Buffer }>(
    'SELECT seq, data FROM body_chunks WHERE message_id = ? AND seq >= ? ORDER BY seq',
  );
  const totals = db.prepare<[], { messages: number; bodyBytes: number }>('SELECT messages, bytes AS bodyBytes FROM totals WHERE id = 1');
  const nextDue = db.prepare<[], { due: number | null }>("SELECT min(due_at) AS due FROM items WHERE state = 'deferred'");
  const queues = db.prepare<[], QueueRow>(
    'SELECT name, delivery_type, route, message_count, suspended, retry_at, retry_since, retry_failures, retry_error, idle_since FROM queues ORDER BY name',
  );
  const submissionCount = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM messages WHERE queue = ?');

  return {
    get({ id }) {
      const row = byId.get(id);
      return row ? withRecipients(row) : null;
    },
    list(request) {
      const rows = request.after === null ? firstPage.all(request.queue, request.limit) : nextPage.all(request.queue, request.after, request.limit);
      return rows.map(withRecipients);
    },
    readChunks(request) {
      const chunks: Uint8Array[] = [];
      let bytes = 0;
      for (const row of chunksFrom.iterate(request.id, request.fromSeq)) {
        if (bytes >= request.maxBytes) return { chunks, nextSeq: row.seq };
        chunks.push(row.data);
        bytes += row.data.length;
      }
      return { chunks, nextSeq: null };
    },
    totals() {
      return totals.get()!;
    },
    nextDueTime() {
      return nextDue.get()!.due;
    },
    listQueues() {
      const submission: QueueRecord = { name: SUBMISSION_QUEUE, deliveryType: 'Undefined', route: null, messageCount: submissionCount.get(SUBMISSION_QUEUE)!.n, suspended: false, retry: null };
      const delivery = queues.all().map((q): QueueRecord => ({
        name: q.name,
        deliveryType: q.name === UNREACHABLE_QUEUE ? 'Undefined' : (q.delivery_type as QueueRecord['deliveryType']),
        route: q.route,
        messageCount: q.message_count,
        suspended: q.suspended === 1,
        retry: q.retry_at === null ? null : { at: q.retry_at, since: q.retry_since, failures: q.retry_failures, lastError: q.retry_error, idleSince: q.idle_since },
      }));
      return [submission, ...delivery];
    },
  };
}
