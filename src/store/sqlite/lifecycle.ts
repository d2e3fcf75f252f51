// Shared steps of a message's life in the store: loading it with its
// recipients, and removing it (body included) once nothing is left to do.
import type { Database } from 'better-sqlite3';
import { SUBMISSION_QUEUE, type DeliveryItem, type PendingAction, type StoredMessage } from '../types.js';
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

  return {
    withRecipients(row: MessageRow): StoredMessage {
      return toStoredMessage(row, recipientsOf.all(row.seq));
    },
    /** A routed item as delivery sees it: its message and the recipients it still has to deliver. */
    deliveryItem(item: ItemRow): DeliveryItem | undefined {
      const row = bySeq.get(item.message_seq);
      if (!row) return undefined;
      // a body no larger than one chunk is that chunk (or none at all)
      const body = row.size <= CHUNK_BYTES ? (firstChunk.get(row.id)?.data ?? Buffer.alloc(0)) : undefined;
      return {
        itemId: item.id,
        queue: item.queue,
        attempts: item.attempts,
        expiresAt: item.expires_at,
        lastError: item.last_error,
        pendingAction: item.pending_action,
        ...(body ? { body } : {}),
        message: toStoredMessage(row, recipientsOf.all(item.message_seq)),
        recipients: pendingOf.all(item.id).map((r) => ({ ...toStoredRecipient(r), position: r.position })),
      };
    },
    /** Sends an item's recipients back to the categorizer (DL-7 resubmit, QU-6 resume from Poison). */
    resubmitItem(itemId: number, messageSeq: number): void {
      unassign.run(itemId);
      deleteItem.run(itemId);
      backToSubmission.run(messageSeq);
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
