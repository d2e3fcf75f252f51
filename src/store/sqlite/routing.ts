// Store operations of the categorizer: take the oldest messages from
// Submission and turn each into routed items, one per next hop (RT-1, QU-4).
import type { Database } from 'better-sqlite3';
import { SUBMISSION_QUEUE } from '../types.js';
import { prepareLifecycle } from './lifecycle.js';
import type { Handlers } from './protocol.js';
import type { MessageRow } from './rows.js';

/** A message whose recipients all went to routed items: it is in their queues, no longer in Submission. */
export const ROUTED = 'Routed';

export function prepareRouting(db: Database): Handlers<'claimSubmission' | 'routeMessages' | 'resubmitQueue'> {
  const lifecycle = prepareLifecycle(db);
  const claim = db.prepare<[string, number], MessageRow>(`
    UPDATE messages SET status = 'Active'
    WHERE seq IN (SELECT seq FROM messages WHERE queue = ? AND status = 'Ready' ORDER BY seq LIMIT ?)
    RETURNING *`);
  const claimSuspect = db.prepare<[string], MessageRow>(`
    UPDATE messages SET status = 'Active'
    WHERE seq = (SELECT seq FROM messages WHERE crash_count > 0 AND queue = ? AND status = 'Ready' ORDER BY seq LIMIT 1)
    RETURNING *`);
  const seqOf = db.prepare<[string], { seq: number }>('SELECT seq FROM messages WHERE id = ?');
  const upsertQueue = db.prepare(`
    INSERT INTO queues (name, delivery_type, route) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET delivery_type = excluded.delivery_type, route = excluded.route`);
  const insertItem = db.prepare('INSERT INTO items (message_seq, queue, state, last_error, expires_at, delay_at) VALUES (?, ?, ?, ?, ?, ?)');
  const assign = db.prepare('UPDATE recipients SET item_id = ? WHERE message_seq = ? AND position = ?');
  const fail = db.prepare("UPDATE recipients SET status = 'Failed', last_reply = ? WHERE message_seq = ? AND position = ?");
  const toRoute = db.prepare<[number], { position: number }>(
    "SELECT position FROM recipients WHERE message_seq = ? AND status = 'Ready' AND item_id IS NULL ORDER BY position",
  );
  // suspended items and those an operator acted on stay where they are
  const queueItems = db.prepare<[string], { id: number; message_seq: number }>(
    "SELECT id, message_seq FROM items WHERE queue = ? AND state IN ('ready', 'deferred', 'held') AND pending_action IS NULL",
  );
  // routed without a crash: a count from a batch that crashed around it no longer points at it
  const markRouted = db.prepare(`UPDATE messages SET queue = '${ROUTED}', status = 'Ready', crash_count = 0 WHERE seq = ?`);

  return {
    claimSubmission({ limit }) {
      const suspect = claimSuspect.get(SUBMISSION_QUEUE);
      return (suspect ? [suspect] : claim.all(SUBMISSION_QUEUE, limit))
        .sort((a, b) => a.seq - b.seq)
        .map((row) => ({ message: lifecycle.withRecipients(row), positions: toRoute.all(row.seq).map((r) => r.position) }));
    },
    routeMessages({ decisions }) {
      for (const { messageId, items, failures } of decisions) {
        // a message removed meanwhile has nothing left to route
        const seq = seqOf.get(messageId)?.seq;
        if (seq === undefined) continue;
        for (const item of items) {
          upsertQueue.run(item.queue, item.deliveryType, item.route);
          const state = item.deliveryType === 'Unreachable' ? 'held' : 'ready';
          const { lastInsertRowid } = insertItem.run(seq, item.queue, state, item.lastError ?? null, item.expiresAt, item.delayAt);
          for (const position of item.recipients) assign.run(lastInsertRowid, seq, position);
        }
        for (const failure of failures) fail.run(failure.reply, seq, failure.position);
        markRouted.run(seq);
        lifecycle.retireIfDone(seq, messageId);
      }
      return null;
    },
    resubmitQueue({ queue }) {
      const items = queueItems.all(queue);
      for (const item of items) lifecycle.resubmitItem(item.id, item.message_seq);
      return items.length;
    },
  };
}
