// What a start does with the work that was in hand when the process died
// (ST-3, QU-6): each message that was being categorized or delivered has its
// crash count raised; at the poison threshold it moves, suspended and with the
// reason, to the Poison queue, where it stays until an operator resumes or
// removes it. Everything else in hand is handed out again (at-least-once). An
// operator's pending suspend takes effect; a pending removal waits for
// claimPendingRemovals.
import type { Database } from 'better-sqlite3';
import { POISON_QUEUE } from '../types.js';
import { ROUTED } from './routing.js';

export function recoverClaims(db: Database, poisonThreshold: number): void {
  const categorizing = db.prepare<[], { seq: number }>("SELECT seq FROM messages WHERE status = 'Active'");
  const delivering = db.prepare<[], { id: number; message_seq: number }>(
    "SELECT id, message_seq FROM items WHERE state = 'active' AND attempting = 1 AND (pending_action IS NULL OR pending_action = 'suspend')",
  );
  const countCrash = db.prepare<[number], { crash_count: number }>('UPDATE messages SET crash_count = crash_count + 1 WHERE seq = ? RETURNING crash_count');
  const poisonQueue = db.prepare(`INSERT OR IGNORE INTO queues (name, delivery_type, route) VALUES ('${POISON_QUEUE}', 'Undefined', NULL)`);
  const poisonItem = db.prepare(`INSERT INTO items (message_seq, queue, state, last_error) VALUES (?, '${POISON_QUEUE}', 'suspended', ?)`);
  const unrouted = db.prepare("UPDATE recipients SET item_id = ? WHERE message_seq = ? AND status = 'Ready' AND item_id IS NULL");
  const reassign = db.prepare('UPDATE recipients SET item_id = ? WHERE item_id = ?');
  const deleteItem = db.prepare('DELETE FROM items WHERE id = ?');
  const markRouted = db.prepare(`UPDATE messages SET queue = '${ROUTED}', status = 'Ready' WHERE seq = ?`);

  const reason = (count: number, doing: string) =>
    `Sluice stopped ${count} times while this message was being ${doing} (poison.crashThreshold ${poisonThreshold}); resume it to send it through routing again`;
  /** A new item in Poison (the triggers keep both queues' counts right, which moving the row would not). */
  const toPoison = (messageSeq: number, lastError: string) => {
    poisonQueue.run();
    return Number(poisonItem.run(messageSeq, lastError).lastInsertRowid);
  };

  db.transaction(() => {
    for (const { seq } of categorizing.all()) {
      const { crash_count } = countCrash.get(seq)!;
      if (crash_count < poisonThreshold) continue;
      unrouted.run(toPoison(seq, reason(crash_count, 'categorized')), seq);
      markRouted.run(seq);
    }
    const counted = new Map<number, number>();
    for (const item of delivering.all()) {
      const crashes = counted.get(item.message_seq) ?? countCrash.get(item.message_seq)!.crash_count;
      counted.set(item.message_seq, crashes);
      if (crashes < poisonThreshold) continue;
      reassign.run(toPoison(item.message_seq, reason(crashes, 'delivered')), item.id);
      deleteItem.run(item.id);
    }
    db.prepare("UPDATE messages SET status = 'Ready' WHERE status = 'Active'").run();
    db.prepare(`
      UPDATE items SET attempting = 0, state = CASE pending_action WHEN 'suspend' THEN 'suspended' ELSE 'ready' END,
        pending_action = CASE pending_action WHEN 'suspend' THEN NULL ELSE pending_action END
      WHERE state = 'active'`).run();
  })();
}
