// Shared steps of a message's life in the store: loading it with its
// recipients, and removing it (body included) once nothing is left to do.
import type { Database } from 'better-sqlite3';
import { SUBMISSION_QUEUE, type DeliveryItem, type PendingAction, type QueueRef, type StoredMessage } from '../types.js';
import { CHUNK_BYTES } from './protocol.js';
import { RECIPIENT_COLUMNS, toStoredMessage, toStoredRecipient, type MessageRow, type RecipientRow } from './rows.js';

export interface ItemRow {
  id: number;
  message_seq: number;
  queue: string;
  attempts: number;
  expires_at: number | null;
  last_error: string | null;
  pending_action: PendingAction | null;
}

export const ITEM_COLUMNS = 'id, message_seq, queue, attempts, expires_at, last_error, pending_action';

export function prepareLifecycle(db: Database) {
  const bySeq = db.prepare<[number], MessageRow>('SELECT * FROM messages WHERE seq = ?');
  const recipientsOf = db.prepare<[number], RecipientRow>(
    `SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_seq = ? ORDER BY position`,
  );
  const pendingOf = db.prepare<[number], RecipientRow>(
    `SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE item_id = ? AND status = 'Ready' ORDER BY position`,
  );
  const firstChunk = db.prepare<[string], { data: Buffer }>('SELECT data FROM body_chunks WHERE message_id = ? AND seq = 0');
  const itemsLeft = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM items WHERE message_seq = ?');
  const deleteMessage = db.prepare('DELETE FROM messages WHERE seq = ?');
  const deleteChunks = db.prepare('DELETE FROM body_chunks WHERE message_id = ?');
  const unassign = db.prepare('UPDATE recipients SET item_id = NULL WHERE item_id = ?');
  const deleteItem = db.prepare('DELETE FROM items WHERE id = ?');
  const backToSubmission = db.prepare(`UPDATE messages SET queue = '${SUBMISSION_QUEUE}', status = 'Ready' WHERE seq = ?`);
  const routeOf = db.prepare<[string], { route: string | null }>('SELECT route FROM queues WHERE name = ?');

  /** A routed item as delivery sees it, under the claim it was handed out with, and the recipients it still has to deliver. */
  const deliveryItem = (item: ItemRow, claim: number): DeliveryItem | undefined => {
    const row = bySeq.get(item.message_seq);
    if (!row) return undefined;
    // a body no larger than one chunk is that chunk (or none at all)
    const body = row.size <= CHUNK_BYTES ? (firstChunk.get(row.id)?.data ?? Buffer.alloc(0)) : undefined;
    return {
      itemId: item.id,
      claim,
      queue: item.queue,
      attempts: item.attempts,
      expiresAt: item.expires_at,
      lastError: item.last_error,
      pendingAction: item.pending_action,
      ...(body ? { body } : {}),
      message: toStoredMessage(row, recipientsOf.all(item.message_seq)),
      recipients: pendingOf.all(item.id).map((r) => ({ ...toStoredRecipient(r), position: r.position })),
    };
  };

  return {
    withRecipients(row: MessageRow): StoredMessage {
      return toStoredMessage(row, recipientsOf.all(row.seq));
    },
    deliveryItem,
    /** Claimed rows, all under one claim; an item whose message is gone meanwhile is left out. */
    deliveryItems(rows: ItemRow[], claim: number): DeliveryItem[] {
      return rows.flatMap((row) => deliveryItem(row, claim) ?? []);
    },
    /** Sends an item's recipients back to the categorizer (DL-7 resubmit, QU-6 resume from Poison). */
    resubmitItem(itemId: number, messageSeq: number): void {
      unassign.run(itemId);
      deleteItem.run(itemId);
      backToSubmission.run(messageSeq);
    },
    /** The delivery queues among these names (a queue without a route, like Unreachable, has no deliveries to wake). */
    queueRefs(names: Iterable<string>): QueueRef[] {
      return [...new Set(names)].flatMap((name) => {
        const route = routeOf.get(name)?.route;
        return route ? [{ name, route }] : [];
      });
    },
    /** Deletes a routed message whose last item is gone; the space is reclaimed. */
    retireIfDone(seq: number, id: string): boolean {
      if (itemsLeft.get(seq)!.n > 0) return false;
      deleteMessage.run(seq);
      deleteChunks.run(id);
      return true;
    },
  };
}
