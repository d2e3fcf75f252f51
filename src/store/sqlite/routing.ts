// Store operations of the categorizer: lease the oldest messages from
// Submission and turn each into routed items, one per next hop (RT-1, QU-4);
// a decision is applied only while its claim still holds the message (ST-5).
import type { Database } from 'better-sqlite3';
import { SUBMISSION_QUEUE } from '../types.js';
import { CLAIM_MESSAGE, HELD_MESSAGE, type Lease, type Leases } from './leases.js';
import { prepareLifecycle } from './lifecycle.js';
import type { Handlers } from './protocol.js';
import type { MessageRow } from './rows.js';

/** A message whose recipients all went to routed items: it is in their queues, no longer in Submission. */
export const ROUTED = 'Routed';

type RoutingOps = 'claimSubmission' | 'routeMessages' | 'releaseSubmission' | 'resubmitQueue';

export function prepareRouting(db: Database, leases: Leases): Handlers<RoutingOps> {
  const lifecycle = prepareLifecycle(db);
  const claim = db.prepare<Lease & { limit: number }, MessageRow>(`
    UPDATE messages SET ${CLAIM_MESSAGE}
    WHERE seq IN (SELECT seq FROM messages WHERE queue = '${SUBMISSION_QUEUE}' AND status = 'Ready' ORDER BY seq LIMIT @limit)
    RETURNING *`);
  const claimSuspect = db.prepare<Lease, MessageRow>(`
    UPDATE messages SET ${CLAIM_MESSAGE}
    WHERE seq = (SELECT seq FROM messages WHERE crash_count > 0 AND queue = '${SUBMISSION_QUEUE}' AND status = 'Ready' ORDER BY seq LIMIT 1)
    RETURNING *`);
  const heldSeq = db.prepare<{ id: string; claim: number }, { seq: number }>(`SELECT seq FROM messages WHERE id = @id AND ${HELD_MESSAGE}`);
  const release = db.prepare<{ id: string; claim: number }>(`UPDATE messages SET status = 'Ready' WHERE id = @id AND ${HELD_MESSAGE}`);
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
    claimSubmission({ limit, now }) {
      const lease = leases.take(now);
      const suspect = claimSuspect.get(lease);
      return (suspect ? [suspect] : claim.all({ ...lease, limit }))
        .sort((a, b) => a.seq - b.seq)
        .map((row) => ({ message: lifecycle.withRecipients(row), positions: toRoute.all(row.seq).map((r) => r.position), claim: lease.token }));
    },
    routeMessages({ decisions }) {
      for (const { messageId, claim: token, items, failures } of decisions) {
        // a message removed meanwhile, or taken back from a categorizer that held it too long, is not this decision's
        const seq = heldSeq.get({ id: messageId, claim: token })?.seq;
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
    releaseSubmission({ claims }) {
      for (const { messageId, claim: token } of claims) release.run({ id: messageId, claim: token });
      return null;
    },
    resubmitQueue({ queue }) {
      const items = queueItems.all(queue);
      for (const item of items) lifecycle.resubmitItem(item.id, item.message_seq);
      return items.length;
    },
  };
}
