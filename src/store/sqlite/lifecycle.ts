// Shared steps of a message's life in the store: loading it with its
// recipients, and removing it (body included) once nothing is left to do.
import type { Database } from 'better-sqlite3';
import type { StoredMessage } from '../types.js';
import { toStoredMessage, type MessageRow, type RecipientRow } from './rows.js';

export function prepareLifecycle(db: Database) {
  const bySeq = db.prepare<[number], MessageRow>('SELECT * FROM messages WHERE seq = ?');
  const recipientsOf = db.prepare<[number], RecipientRow>(
    'SELECT position, address, orcpt, notify, status, last_reply FROM recipients WHERE message_seq = ? ORDER BY position',
  );
  const itemsLeft = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM items WHERE message_seq = ?');
  const deleteMessage = db.prepare('DELETE FROM messages WHERE seq = ?');
  const deleteChunks = db.prepare('DELETE FROM body_chunks WHERE message_id = ?');

  return {
    withRecipients(row: MessageRow): StoredMessage {
      return toStoredMessage(row, recipientsOf.all(row.seq));
    },
    load(seq: number): { row: MessageRow; message: StoredMessage } | undefined {
      const row = bySeq.get(seq);
      return row ? { row, message: toStoredMessage(row, recipientsOf.all(seq)) } : undefined;
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
