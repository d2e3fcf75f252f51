// What becomes of work whose holder is gone (ST-3, ST-5, QU-6): claims whose
// lease expired, and at start every claim in the file (the store is opened by
// one process only, so whatever the file says is claimed, a dead process
// claimed). Each message that was being categorized, or whose delivery attempt
// had begun, has its crash count raised; at the poison threshold it moves,
// suspended and with the reason, to the Poison queue, where it stays until an
// operator resumes or removes it. Everything else is handed out again
// (at-least-once), first in line as its receipt order puts it. An operator's
// pending suspend takes effect; a pending removal waits, unclaimed, for
// claimPendingRemovals.
import type { Database } from 'better-sqlite3';
import { POISON_QUEUE, type QueueRef } from '../types.js';
import { prepareLifecycle } from './lifecycle.js';
import { ROUTED } from './routing.js';

/** `now` for which every lease has expired: what a start passes. */
export const EVERY_LEASE = Number.MAX_SAFE_INTEGER;

// every claimed row has a lease (migration 9 gave the older ones an expired one), so these find them all
const CLAIMED_MESSAGE = "status = 'Active'";
const CLAIMED_ITEM = "state = 'active'";

export function prepareReclaim(db: Database, poisonThreshold: number) {
  const lifecycle = prepareLifecycle(db);
  const categorizing = db.prepare<[number], { seq: number }>(`SELECT seq FROM messages WHERE ${CLAIMED_MESSAGE} AND lease_expires <= ?`);
  const delivering = db.prepare<[number], { id: number; message_seq: number }>(`
    SELECT id, message_seq FROM items
    WHERE ${CLAIMED_ITEM} AND lease_expires <= ? AND attempting = 1 AND (pending_action IS NULL OR pending_action = 'suspend')`);
  const countCrash = db.prepare<[number], { crash_count: number }>('UPDATE messages SET crash_count = crash_count + 1 WHERE seq = ? RETURNING crash_count');
  const poisonQueue = db.prepare(`INSERT OR IGNORE INTO queues (name, delivery_type, route) VALUES ('${POISON_QUEUE}', 'Undefined', NULL)`);
  const poisonItem = db.prepare(`INSERT INTO items (message_seq, queue, state, last_error) VALUES (?, '${POISON_QUEUE}', 'suspended', ?)`);
  const unrouted = db.prepare("UPDATE recipients SET item_id = ? WHERE message_seq = ? AND status = 'Ready' AND item_id IS NULL");
  const reassign = db.prepare('UPDATE recipients SET item_id = ? WHERE item_id = ?');
  const deleteItem = db.prepare('DELETE FROM items WHERE id = ?');
  const markRouted = db.prepare(`UPDATE messages SET queue = '${ROUTED}', status = 'Ready' WHERE seq = ?`);
  const releaseMessages = db.prepare(`UPDATE messages SET status = 'Ready' WHERE ${CLAIMED_MESSAGE} AND lease_expires <= ?`);
  const releaseItems = db.prepare<[number], { queue: string; state: string; pending_action: string | null }>(`
    UPDATE items SET attempting = 0, state = CASE pending_action WHEN 'suspend' THEN 'suspended' ELSE 'ready' END,
      pending_action = nullif(pending_action, 'suspend')
    WHERE ${CLAIMED_ITEM} AND lease_expires <= ? RETURNING queue, state, pending_action`);
  const nextMessageExpiry = db.prepare<[], { at: number | null }>(`SELECT min(lease_expires) AS at FROM messages WHERE ${CLAIMED_MESSAGE}`);
  const nextItemExpiry = db.prepare<[], { at: number | null }>(`SELECT min(lease_expires) AS at FROM items WHERE ${CLAIMED_ITEM}`);

  const reason = (count: number, doing: string) =>
    `Sluice stopped ${count} times while this message was being ${doing} (poison.crashThreshold ${poisonThreshold}); resume it to send it through routing again`;
  /** A new item in Poison (the triggers keep both queues' counts right, which moving the row would not). */
  const toPoison = (messageSeq: number, lastError: string) => {
    poisonQueue.run();
    return Number(poisonItem.run(messageSeq, lastError).lastInsertRowid);
  };

  /** Takes back every claim whose lease expired by `now`; returns the delivery queues that got ready items. */
  const reclaim = (now: number): QueueRef[] => {
    for (const { seq } of categorizing.all(now)) {
      const { crash_count } = countCrash.get(seq)!;
      if (crash_count < poisonThreshold) continue;
      unrouted.run(toPoison(seq, reason(crash_count, 'categorized')), seq);
      markRouted.run(seq);
    }
    // one crash per message, however many of its items were on the wire
    const counted = new Map<number, number>();
    for (const item of delivering.all(now)) {
      const crashes = counted.get(item.message_seq) ?? countCrash.get(item.message_seq)!.crash_count;
      counted.set(item.message_seq, crashes);
      if (crashes < poisonThreshold) continue;
      reassign.run(toPoison(item.message_seq, reason(crashes, 'delivered')), item.id);
      deleteItem.run(item.id);
    }
    releaseMessages.run(now);
    const ready = releaseItems.all(now).filter((row) => row.state === 'ready' && row.pending_action === null);
    return lifecycle.queueRefs(ready.map((row) => row.queue));
  };

  return {
    reclaim,
    /** When reclaim would next take something back. */
    nextLeaseExpiry(): number | null {
      const times = [nextMessageExpiry.get()!.at, nextItemExpiry.get()!.at].filter((t): t is number => t !== null);
      return times.length > 0 ? Math.min(...times) : null;
    },
  };
}
