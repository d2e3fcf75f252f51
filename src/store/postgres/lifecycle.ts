// Shared steps of a message's life in the PostgreSQL store: loading claimed
// items with their messages and recipients (three queries for a whole batch,
// not three per item), sending an item back to the categorizer, and removing a
// message, body included, once nothing is left to do.
import { SUBMISSION_QUEUE, type DeliveryItem, type QueueRef, type StoredMessage } from '../types.js';
import type { ItemRow as SqliteItemRow } from '../sqlite/lifecycle.js';
import { RECIPIENT_COLUMNS, toStoredMessage, toStoredRecipient, type MessageRow, type RecipientRow } from '../sqlite/rows.js';
import type { Queryable } from './connection.js';

/** Body bytes gathered into one chunk; a body no larger than this is one chunk and comes along with its item. */
export const CHUNK_BYTES = 64 * 1024;

/** An item as the SQLite store reads it, and the token of its last claim. */
export type ItemRow = SqliteItemRow & { lease_token: number | null };

export const ITEM_COLUMNS = 'items.id, items.message_seq, items.queue, items.attempts, items.expires_at, items.last_error, items.pending_action, items.lease_token';

type RecipientOfRow = RecipientRow & { message_seq: number; item_id: number | null };

/** Messages with all their recipients, by seq. */
async function loadMessages(db: Queryable, seqs: number[]): Promise<Map<number, { row: MessageRow; recipients: RecipientOfRow[] }>> {
  const loaded = new Map<number, { row: MessageRow; recipients: RecipientOfRow[] }>();
  if (seqs.length === 0) return loaded;
  const messages = await db.query<MessageRow>('SELECT * FROM messages WHERE seq = ANY($1)', [seqs]);
  for (const row of messages.rows) loaded.set(row.seq, { row, recipients: [] });
  const recipients = await db.query<RecipientOfRow>(
    `SELECT message_seq, item_id, ${RECIPIENT_COLUMNS} FROM recipients WHERE message_seq = ANY($1) ORDER BY message_seq, position`,
    [seqs],
  );
  for (const r of recipients.rows) loaded.get(r.message_seq)?.recipients.push(r);
  return loaded;
}

export async function withRecipients(db: Queryable, rows: MessageRow[]): Promise<StoredMessage[]> {
  const loaded = await loadMessages(db, rows.map((r) => r.seq));
  return rows.map((row) => toStoredMessage(row, loaded.get(row.seq)?.recipients ?? []));
}

/**
 * Items as delivery sees them, each under `claim` (or the token it was claimed with), with the recipients it
 * still has to deliver and, when it is one chunk, its body. An item whose message is gone meanwhile is left out.
 */
export async function deliveryItems(db: Queryable, items: ItemRow[], claim?: number): Promise<DeliveryItem[]> {
  const loaded = await loadMessages(db, [...new Set(items.map((i) => i.message_seq))]);
  const small = [...loaded.values()].filter((m) => m.row.size <= CHUNK_BYTES).map((m) => m.row.id);
  const bodies = new Map<string, Buffer>();
  if (small.length > 0) {
    const chunks = await db.query<{ message_id: string; data: Buffer }>('SELECT message_id, data FROM body_chunks WHERE seq = 0 AND message_id = ANY($1)', [small]);
    for (const chunk of chunks.rows) bodies.set(chunk.message_id, chunk.data);
  }
  return items.flatMap(({ id: itemId, message_seq, queue, attempts, expires_at: expiresAt, last_error: lastError, pending_action: pendingAction, lease_token }): DeliveryItem[] => {
    const loadedMessage = loaded.get(message_seq);
    if (!loadedMessage) return [];
    const { row, recipients } = loadedMessage;
    const body = row.size <= CHUNK_BYTES ? (bodies.get(row.id) ?? Buffer.alloc(0)) : undefined;
    const message = toStoredMessage(row, recipients);
    const pending = recipients.filter((r) => r.item_id === itemId && r.status === 'Ready').map((r) => ({ ...toStoredRecipient(r), position: r.position }));
    return [{ itemId, claim: claim ?? lease_token ?? 0, queue, attempts, expiresAt, lastError, pendingAction, ...(body ? { body } : {}), message, recipients: pending }];
  });
}

/** Sends items' recipients back to the categorizer (DL-7 resubmit, QU-6 resume from Poison). */
export async function resubmitItems(db: Queryable, items: Array<{ id: number; message_seq: number }>): Promise<void> {
  if (items.length === 0) return;
  const ids = items.map((i) => i.id);
  await db.query('UPDATE recipients SET item_id = NULL WHERE item_id = ANY($1)', [ids]);
  await db.query('DELETE FROM items WHERE id = ANY($1)', [ids]);
  await db.query(`UPDATE messages SET queue = '${SUBMISSION_QUEUE}', status = 'Ready' WHERE seq = ANY($1)`, [items.map((i) => i.message_seq)]);
}

/** The delivery queues among these names, in order (a queue without a route, like Unreachable, has no deliveries to wake). */
export async function queueRefs(db: Queryable, names: Iterable<string>): Promise<QueueRef[]> {
  const unique = [...new Set(names)];
  if (unique.length === 0) return [];
  const { rows } = await db.query<{ name: string; route: string }>('SELECT name, route FROM queues WHERE name = ANY($1) AND route IS NOT NULL', [unique]);
  const routes = new Map(rows.map((r) => [r.name, r.route]));
  return unique.flatMap((name) => {
    const route = routes.get(name);
    return route ? [{ name, route }] : [];
  });
}

/**
 * Deletes a routed message whose last item is gone; the space is reclaimed. The caller holds the message row
 * locked (FOR UPDATE), so two nodes finishing its last two items cannot both see the other's still there.
 */
export async function retireIfDone(db: Queryable, seq: number): Promise<boolean> {
  const { rows } = await db.query<{ id: string }>(
    'WITH gone AS (DELETE FROM messages WHERE seq = $1 AND NOT EXISTS (SELECT 1 FROM items WHERE message_seq = $1) RETURNING id), ' +
      'chunks AS (DELETE FROM body_chunks WHERE message_id IN (SELECT id FROM gone)) SELECT id FROM gone',
    [seq],
  );
  return rows.length > 0;
}
