// Store operations of deadlines: expiry (DL-5) and delay notices (DL-6). The
// deadline alarm is set from nextDeadline and serviced by claimExpired and
// dueDelayNotices, so all three are built from the same two conditions: an
// alarm can never fire for something neither hands out.
import type { Database } from 'better-sqlite3';
import { CLAIM_ITEM, NO_CLAIM, type Lease, type Leases } from './leases.js';
import { ITEM_COLUMNS, prepareLifecycle, type ItemRow } from './lifecycle.js';
import type { Handlers } from './protocol.js';

// a claimed item's expiry waits for its holder: the attempt under way may still deliver it
const EXPIRES_UNCLAIMED = "expires_at IS NOT NULL AND state <> 'active'";
// a notice is due whoever holds the item: it reports on waiting recipients, it does not touch them
const NOTICE_PENDING = 'delay_at IS NOT NULL';

type DeadlineOps = 'claimExpired' | 'dueDelayNotices' | 'clearDelayNotices' | 'nextDeadline';

/** Marks delay notices as sent; shared with the commit of the notice itself, which clears it in its own transaction. */
export function prepareClearDelayNotices(db: Database): (itemIds: number[]) => void {
  const clear = db.prepare('UPDATE items SET delay_at = NULL WHERE id = ?');
  return (itemIds) => {
    for (const id of itemIds) clear.run(id);
  };
}

export function prepareDeadlines(db: Database, leases: Leases): Handlers<DeadlineOps> {
  const lifecycle = prepareLifecycle(db);
  const clearDelayNotices = prepareClearDelayNotices(db);
  const claimExpired = db.prepare<Lease & { now: number; limit: number }, ItemRow>(`
    UPDATE items SET ${CLAIM_ITEM}
    WHERE id IN (SELECT id FROM items WHERE ${EXPIRES_UNCLAIMED} AND expires_at <= @now ORDER BY expires_at LIMIT @limit)
    RETURNING ${ITEM_COLUMNS}`);
  const dueNotices = db.prepare<{ now: number; limit: number; after: number }, ItemRow>(
    `SELECT ${ITEM_COLUMNS} FROM items WHERE ${NOTICE_PENDING} AND delay_at <= @now AND id > @after ORDER BY id LIMIT @limit`,
  );
  const nextExpiry = db.prepare<[], { at: number | null }>(`SELECT min(expires_at) AS at FROM items WHERE ${EXPIRES_UNCLAIMED}`);
  const nextNotice = db.prepare<[], { at: number | null }>(`SELECT min(delay_at) AS at FROM items WHERE ${NOTICE_PENDING}`);

  return {
    claimExpired({ now, limit }) {
      const lease = leases.take(now);
      return lifecycle.deliveryItems(claimExpired.all({ ...lease, now, limit }), lease.token);
    },
    dueDelayNotices({ now, limit, afterItemId }) {
      return lifecycle.deliveryItems(dueNotices.all({ now, limit, after: afterItemId }), NO_CLAIM);
    },
    clearDelayNotices({ itemIds }) {
      clearDelayNotices(itemIds);
      return null;
    },
    nextDeadline() {
      const times = [nextExpiry.get()!.at, nextNotice.get()!.at].filter((t): t is number => t !== null);
      return times.length > 0 ? Math.min(...times) : null;
    },
  };
}
