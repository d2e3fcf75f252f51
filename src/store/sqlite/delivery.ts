// Store operations of delivery: hand out the oldest ready items of a queue
// (FIFO, QU-5), record each attempt's per-recipient outcome (DL-2), and bring
// deferred items back when their time comes. Every lookup is by index (ST-4).
import type { Database } from 'better-sqlite3';
import type { PendingAction, RecipientOutcome } from '../types.js';
import { ITEM_COLUMNS, prepareLifecycle, type ItemRow } from './lifecycle.js';
import type { Handlers } from './protocol.js';

const STATUS_OF: Record<RecipientOutcome['result'], string> = { delivered: 'Delivered', failed: 'Failed', deferred: 'Ready' };

type DeliveryOps = 'claimDeliveries' | 'beginAttempt' | 'recordDelivery' | 'releaseDeliveries' | 'promoteDue' | 'dropQueueIfEmpty' | 'claimExpired' | 'takeDelayNotices';

export function prepareDelivery(db: Database): Handlers<DeliveryOps> {
  const lifecycle = prepareLifecycle(db);
  const claim = db.prepare<[number, string, number], ItemRow>(`
    UPDATE items SET state = 'active', last_attempt_at = ?
    WHERE id IN (SELECT id FROM items WHERE queue = ? AND state = 'ready' AND pending_action IS NULL ORDER BY message_seq LIMIT ?)
    RETURNING ${ITEM_COLUMNS}`);
  const claimExpired = db.prepare<[number, number], ItemRow>(`
    UPDATE items SET state = 'active'
    WHERE id IN (SELECT id FROM items WHERE expires_at <= ? AND state <> 'active' ORDER BY expires_at LIMIT ?)
    RETURNING ${ITEM_COLUMNS}`);
  const takeDelays = db.prepare<[number, number], ItemRow>(`
    UPDATE items SET delay_at = NULL
    WHERE id IN (SELECT id FROM items WHERE delay_at <= ? AND state <> 'active' ORDER BY delay_at LIMIT ?)
    RETURNING ${ITEM_COLUMNS}`);
  const itemById = db.prepare<[number], { message_seq: number; message_id: string; pending_action: PendingAction | null }>(
    'SELECT items.message_seq, messages.id AS message_id, items.pending_action FROM items JOIN messages ON messages.seq = items.message_seq WHERE items.id = ?',
  );
  const setRecipient = db.prepare(
    'UPDATE recipients SET status = ?, last_reply = ?, remote_mta = ?, last_attempt_at = ? WHERE message_seq = ? AND position = ?',
  );
  const stillPending = db.prepare<[number], { n: number }>("SELECT count(*) AS n FROM recipients WHERE item_id = ? AND status = 'Ready'");
  const beginAttempt = db.prepare('UPDATE items SET attempting = 1 WHERE id = ?');
  const defer = db.prepare("UPDATE items SET state = 'deferred', attempting = 0, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?");
  const deferSuspended = db.prepare(
    "UPDATE items SET state = 'suspended', attempting = 0, pending_action = NULL, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
  );
  // stays claimed for the removal the caller carries out next
  const deferForRemoval = db.prepare('UPDATE items SET attempting = 0, due_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?');
  const deleteItem = db.prepare('DELETE FROM items WHERE id = ?');
  const release = db.prepare<[number], ItemRow>(`
    UPDATE items SET state = CASE WHEN pending_action IS NULL THEN 'ready' WHEN pending_action = 'suspend' THEN 'suspended' ELSE 'active' END,
      pending_action = CASE pending_action WHEN 'suspend' THEN NULL ELSE pending_action END
    WHERE id = ? AND state = 'active' RETURNING ${ITEM_COLUMNS}`);
  const promote = db.prepare<[number], { queue: string }>(
    "UPDATE items SET state = 'ready', due_at = NULL WHERE state = 'deferred' AND due_at <= ? RETURNING queue",
  );
  const routeOf = db.prepare<[string], { route: string | null }>('SELECT route FROM queues WHERE name = ?');
  const dropQueue = db.prepare('DELETE FROM queues WHERE name = ? AND message_count = 0 AND suspended = 0');

  const deliveryItems = (rows: ItemRow[]) => rows.flatMap((row) => lifecycle.deliveryItem(row) ?? []);

  return {
    claimDeliveries({ queue, limit, now }) {
      return deliveryItems(claim.all(now, queue, limit).sort((a, b) => a.message_seq - b.message_seq));
    },
    claimExpired({ now, limit }) {
      return deliveryItems(claimExpired.all(now, limit));
    },
    takeDelayNotices({ now, limit }) {
      return deliveryItems(takeDelays.all(now, limit));
    },
    beginAttempt({ itemId }) {
      beginAttempt.run(itemId);
      return null;
    },
    recordDelivery({ itemId, outcomes, retryAt, now }) {
      const item = itemById.get(itemId);
      if (!item) throw new Error(`routed item ${itemId} is not in the store`);
      for (const o of outcomes) setRecipient.run(STATUS_OF[o.result], o.reply, o.remoteMta ?? null, now, item.message_seq, o.position);
      if (stillPending.get(itemId)!.n > 0) {
        const lastError = outcomes.find((o) => o.result === 'deferred')?.reply ?? null;
        const pending = item.pending_action;
        (pending === null ? defer : pending === 'suspend' ? deferSuspended : deferForRemoval).run(retryAt, lastError, itemId);
        return pending;
      }
      deleteItem.run(itemId);
      lifecycle.retireIfDone(item.message_seq, item.message_id);
      return null;
    },
    releaseDeliveries({ itemIds }) {
      const toRemove = itemIds.flatMap((id) => {
        const row = release.get(id);
        return row?.pending_action ? [row] : [];
      });
      return deliveryItems(toRemove);
    },
    promoteDue({ now }) {
      const names = [...new Set(promote.all(now).map((row) => row.queue))];
      return names.flatMap((name) => {
        const route = routeOf.get(name)?.route;
        return route ? [{ name, route }] : [];
      });
    },
    dropQueueIfEmpty({ queue }) {
      return dropQueue.run(queue).changes > 0;
    },
  };
}
