// Reads of the PostgreSQL store: one message, a page of a queue in FIFO order,
// the queues with their state and counts, and the totals back-pressure (IN-6)
// checks, measured on the database: the sum of a few counter rows that the
// triggers of migration 1 keep, so the check costs the same with 10 or 10M
// messages queued, cluster-wide.
import pg from 'pg';
import { SUBMISSION_QUEUE, UNREACHABLE_QUEUE, type QueueRecord, type StoredMessage } from '../types.js';
import type { MessageRow } from '../sqlite/rows.js';
import { withRecipients } from './lifecycle.js';

interface QueueRow {
  name: string;
  delivery_type: string;
  route: string | null;
  message_count: number;
  suspended: boolean;
  retry_at: number | null;
  // set together with retry_at (setQueueRetry)
  retry_since: number;
  retry_failures: number;
  retry_error: string;
  idle_since: number;
}

export async function getMessage(pool: pg.Pool, id: string): Promise<StoredMessage | undefined> {
  const { rows } = await pool.query<MessageRow>('SELECT * FROM messages WHERE id = $1', [id]);
  return (await withRecipients(pool, rows))[0];
}

export async function listQueue(pool: pg.Pool, queue: string, after: string | undefined, limit: number): Promise<StoredMessage[]> {
  const { rows } =
    after === undefined
      ? await pool.query<MessageRow>('SELECT * FROM messages WHERE queue = $1 ORDER BY seq LIMIT $2', [queue, limit])
      : await pool.query<MessageRow>('SELECT * FROM messages WHERE queue = $1 AND seq > (SELECT seq FROM messages WHERE id = $2) ORDER BY seq LIMIT $3', [queue, after, limit]);
  return withRecipients(pool, rows);
}

export async function totals(pool: pg.Pool): Promise<{ messages: number; bodyBytes: number }> {
  const { rows } = await pool.query<{ messages: number; bytes: number }>('SELECT coalesce(sum(messages), 0) AS messages, coalesce(sum(bytes), 0) AS bytes FROM totals');
  return { messages: rows[0]!.messages, bodyBytes: rows[0]!.bytes };
}

export async function listQueues(pool: pg.Pool): Promise<QueueRecord[]> {
  // counted, not kept in the queue row: a row every node would update for every item would serialize them
  const [submission, queues] = await Promise.all([
    pool.query<{ n: number }>('SELECT count(*) AS n FROM messages WHERE queue = $1', [SUBMISSION_QUEUE]),
    pool.query<QueueRow>(`
      SELECT q.name, q.delivery_type, q.route, coalesce(c.n, 0) AS message_count, q.suspended, q.retry_at, q.retry_since, q.retry_failures, q.retry_error, q.idle_since
      FROM queues q LEFT JOIN (SELECT queue, count(*) AS n FROM items GROUP BY queue) c ON c.queue = q.name
      ORDER BY q.name COLLATE "C"`),
  ]);
  const first: QueueRecord = { name: SUBMISSION_QUEUE, deliveryType: 'Undefined', route: null, messageCount: submission.rows[0]!.n, suspended: false, retry: null };
  return [
    first,
    ...queues.rows.map((q): QueueRecord => ({
      name: q.name,
      deliveryType: q.name === UNREACHABLE_QUEUE ? 'Undefined' : (q.delivery_type as QueueRecord['deliveryType']),
      route: q.route,
      messageCount: q.message_count,
      suspended: q.suspended,
      retry: q.retry_at === null ? null : { at: q.retry_at, since: q.retry_since, failures: q.retry_failures, lastError: q.retry_error, idleSince: q.idle_since },
    })),
  ];
}
