// Store operations that read: one message, a page of a queue in FIFO order,
// body chunks in order, and totals.
import type { Database } from 'better-sqlite3';
import type { StoredMessage } from '../types.js';
import type { ReadRequest, ResultOf } from './protocol.js';
import { toStoredMessage, type MessageRow, type RecipientRow } from './rows.js';

export function prepareReads(db: Database) {
  const byId = db.prepare<[string], MessageRow>('SELECT * FROM messages WHERE id = ?');
  const recipientsOf = db.prepare<[number], RecipientRow>(
    'SELECT address, orcpt, notify, status FROM recipients WHERE message_seq = ? ORDER BY position',
  );
  const firstPage = db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE queue = ? ORDER BY seq LIMIT ?');
  const nextPage = db.prepare<[string, string, number], MessageRow>(
    'SELECT * FROM messages WHERE queue = ? AND seq > (SELECT seq FROM messages WHERE id = ?) ORDER BY seq LIMIT ?',
  );
  const chunksFrom = db.prepare<[string, number], { seq: number; data: Buffer }>(
    'SELECT seq, data FROM body_chunks WHERE message_id = ? AND seq >= ? ORDER BY seq',
  );
  const totals = db.prepare<[], { messages: number; bodyBytes: number | null }>(
    'SELECT count(*) AS messages, sum(size) AS bodyBytes FROM messages',
  );

  const withRecipients = (row: MessageRow): StoredMessage => toStoredMessage(row, recipientsOf.all(row.seq));

  return {
    get(id: string): ResultOf['get'] {
      const row = byId.get(id);
      return row ? withRecipients(row) : null;
    },
    list(request: Extract<ReadRequest, { op: 'list' }>): ResultOf['list'] {
      const rows = request.after === null ? firstPage.all(request.queue, request.limit) : nextPage.all(request.queue, request.after, request.limit);
      return rows.map(withRecipients);
    },
    readChunks(request: Extract<ReadRequest, { op: 'readChunks' }>): ResultOf['readChunks'] {
      const chunks: Uint8Array[] = [];
      let bytes = 0;
      for (const row of chunksFrom.iterate(request.id, request.fromSeq)) {
        if (bytes >= request.maxBytes) return { chunks, nextSeq: row.seq };
        chunks.push(row.data);
        bytes += row.data.length;
      }
      return { chunks, nextSeq: null };
    },
    totals(): { messages: number; bodyBytes: number } {
      const row = totals.get()!;
      return { messages: row.messages, bodyBytes: row.bodyBytes ?? 0 };
    },
  };
}
