// Store operations of delivery: hand out the oldest ready items of a queue
// (FIFO, QU-5) under a lease, record each attempt's per-recipient outcome
// (DL-2), and bring deferred items back when their time comes. Every write
// about a claimed item is fenced by its claim token (ST-5); every lookup is by
// index (ST-4).
import type { Database } from 'better-sqlite3';
import type { ClaimRef, PendingAction, RecipientOutcome } from '../types.js';
import { CLAIM_ITEM, HELD_ITEM, type Lease, type Leases } from './leases.js';
import { ITEM_COLUMNS, prepareLifecycle, type ItemRow } from './lifecycle.js';
import type { Handlers } from './protocol.js';

const STATUS_OF: Record<RecipientOutcome['result'], string> = { delivered: 'Delivered', failed: 'Failed', deferred: 'Ready' };

type DeliveryOps = 'claimDeliveries' | 'beginAttempt' | 'recordDelivery' | 'releaseDeliveries' | 'renewLeases' | 'promoteDue' | 'dropQueueIfEmpty';

export function prepareDelivery(db: Database, leases: Leases): Handlers<DeliveryOps> {
  const lifecycle = prepareLifecycle(db);
  // the queue's state is checked in the claim itself, so no caller can hand out items of a suspended queue
  // or one in Retry (MG-2, DL-3), whatever it believed about the queue
  const claim = db.prepare<Lease & { queue: string; limit: number; now: number }, ItemRow>(`
    UPDATE items SET ${CLAIM_ITEM}
    WHERE id IN (
      SELECT id FROM items WHERE queue = @queue AND state = 'ready' AND pending_action IS NULL
        AND NOT EXISTS (SELECT 1 FROM queues WHERE name = @queue AND (suspended = 1 OR retry_at > @now))
      ORDER BY message_seq LIMIT @limit)
    RETURNING ${ITEM_COLUMNS}`);
  const held = db.prepare<ClaimRef, { message_seq: number; message_id: string; pending_action: PendingAction | null }>(`
    SELECT message_seq, (SELECT id FROM messages WHERE seq = items.message_seq) AS message_id, pending_action
    FROM items WHERE id = @itemId AND ${HELD_ITEM}`);
  const beginAttempt = db.prepare('UPDATE items SET attempting = 1, last_attempt_at = ? WHERE id = ?');
  const setRecipient = db.prepare(
    'UPDATE recipients SET status = ?, last_reply = ?, remote_mta = ?, last_attempt_at = ? WHERE message_seq = ? AND position = ?',
  );
  const stillPending = db.prepare<[number], { n: number }>("SELECT count(*) AS n FROM recipients WHERE item_id = ? AND status = 'Ready'");
  const defer = db.prepare("UPDATE items SET state = 'deferred', attempting = 0, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?");
  const deferSuspended = db.prepare(
    "UPDATE items SET state = 'suspended', attempting = 0, pending_action = NULL, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
  );
  // stays claimed for the removal the caller carries out next
  const deferForRemoval = db.prepare('UPDATE items SET attempting = 0, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?');
  const deleteItem = db.prepare('DELETE FROM items WHERE id = ?');
  // a pending removal keeps the item claimed, under the same lease, for the caller to carry out
  const release = db.prepare<ClaimRef, ItemRow>(`
    UPDATE items SET state = CASE WHEN pending_action IS NULL THEN 'ready' WHEN pending_action = 'suspend' THEN 'suspended' ELSE 'active' END,
      pending_action = nullif(pending_action, 'suspend')
    WHERE id = @itemId AND ${HELD_ITEM} RETURNING ${ITEM_COLUMNS}`);
  const renew = db.prepare<ClaimRef & { expires: number }>(`UPDATE items SET lease_expires = @expires WHERE id = @itemId AND ${HELD_ITEM}`);
  const promote = db.prepare<[number], { queue: string }>(
    "UPDATE items SET state = 'ready', due_at = NULL WHERE state = 'deferred' AND due_at <= ? RETURNING queue",
  );
  const dropQueue = db.prepare('DELETE FROM queues WHERE name = ? AND message_count = 0 AND suspended = 0');

  // only the fields of a reference are bound: a caller may pass whole DeliveryItems
  const refOf = ({ itemId, claim }: ClaimRef): ClaimRef => ({ itemId, claim });

  return {
    claimDeliveries({ queue, limit, now }) {
      const lease = leases.take(now);
      const rows = claim.all({ ...lease, queue, limit, now }).sort((a, b) => a.message_seq - b.message_seq);
      return lifecycle.deliveryItems(rows, lease.token);
    },
    beginAttempt({ ref, now }) {
      const item = held.get(refOf(ref));
      if (!item) return 'lost';
      // the operator's action wins over the attempt; no attempt begins, so no crash can count for it
      if (item.pending_action !== null) return item.pending_action;
      beginAttempt.run(now, ref.itemId);
      return 'go';
    },
    recordDelivery({ ref, outcomes, retryAt, now }) {
      const item = held.get(refOf(ref));
      if (!item) return 'lost';
      for (const o of outcomes) setRecipient.run(STATUS_OF[o.result], o.reply, o.remoteMta ?? null, now, item.message_seq, o.position);
      if (stillPending.get(ref.itemId)!.n > 0) {
        const lastError = outcomes.find((o) => o.result === 'deferred')?.reply ?? null;
        const pending = item.pending_action;
        (pending === null ? defer : pending === 'suspend' ? deferSuspended : deferForRemoval).run(retryAt, lastError, ref.itemId);
        return pending;
      }
      deleteItem.run(ref.itemId);
      lifecycle.retireIfDone(item.message_seq, item.message_id);
      return null;
    },
    releaseDeliveries({ refs }) {
      return refs.flatMap((ref) => {
        const row = release.get(refOf(ref));
        return row?.pending_action ? (lifecycle.deliveryItem(row, ref.claim) ?? []) : [];
      });
    },
    renewLeases({ refs, now }) {
      const expires = leases.expiresAt(now);
      return refs.filter((ref) => renew.run({ ...refOf(ref), expires }).changes === 0).map(refOf);
    },
    promoteDue({ now }) {
      return lifecycle.queueRefs(promote.all(now).map((row) => row.queue));
    },
    dropQueueIfEmpty({ queue }) {
      return dropQueue.run(queue).changes > 0;
    },
  };
}
