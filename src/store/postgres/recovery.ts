// What becomes of work whose holder is gone (ST-3, ST-5, QU-6), on a database
// several nodes share: claims whose lease expired, whoever held them (a node
// that died or went silent), and at a node's start the claims of its own
// earlier process (node names are unique, so that process is gone). As in the
// SQLite store, each message that was being categorized, or whose delivery
// attempt had begun, has its crash count raised; at the poison threshold it
// moves, suspended and with the reason, to the Poison queue. Everything else is
// handed out again (at-least-once). Rows are taken with SKIP LOCKED, so two
// nodes reclaiming at once take back different rows, each exactly once.
import pg from 'pg';
import { POISON_QUEUE, type QueueRef } from '../types.js';
import { transaction, type Queryable } from './connection.js';
import { queueRefs } from './lifecycle.js';
import { ROUTED } from './routing.js';

// $1: now; $2: a node whose claims are all over (at its start), else null
const OVER = "(lease_expires <= $1 OR split_part(lease_owner, '/', 1) = $2)";

const reason = (count: number, doing: string, threshold: number) =>
  `Sluice stopped ${count} times while this message was being ${doing} (poison.crashThreshold ${threshold}); resume it to send it through routing again`;

/** A new, suspended item in Poison for a message. */
async function toPoison(tx: Queryable, messageSeq: number, lastError: string): Promise<number> {
  await tx.query(`INSERT INTO queues (name, delivery_type, route) VALUES ('${POISON_QUEUE}', 'Undefined', NULL) ON CONFLICT (name) DO NOTHING`);
  const { rows } = await tx.query<{ id: number }>(`INSERT INTO items (message_seq, queue, state, last_error) VALUES ($1, '${POISON_QUEUE}', 'suspended', $2) RETURNING id`, [
    messageSeq,
    lastError,
  ]);
  return rows[0]!.id;
}

/** Messages the categorizer held: back to Submission, a crash counted for each. */
async function reclaimMessages(tx: Queryable, threshold: number, now: number, node: string | null): Promise<number> {
  const { rows } = await tx.query<{ seq: number; crash_count: number }>(
    `UPDATE messages SET status = 'Ready', crash_count = crash_count + 1
     WHERE seq IN (SELECT seq FROM messages WHERE status = 'Active' AND ${OVER} FOR UPDATE SKIP LOCKED) RETURNING seq, crash_count`,
    [now, node],
  );
  for (const { seq, crash_count } of rows.filter((r) => r.crash_count >= threshold)) {
    const item = await toPoison(tx, seq, reason(crash_count, 'categorized', threshold));
    await tx.query("UPDATE recipients SET item_id = $1 WHERE message_seq = $2 AND status = 'Ready' AND item_id IS NULL", [item, seq]);
    await tx.query(`UPDATE messages SET queue = '${ROUTED}' WHERE seq = $1`, [seq]);
  }
  return rows.filter((r) => r.crash_count < threshold).length;
}

/** Claimed items: a begun attempt counts a crash (once per message); the rest are handed out again. */
async function reclaimItems(tx: Queryable, threshold: number, now: number, node: string | null): Promise<QueueRef[]> {
  const { rows } = await tx.query<{ id: number; message_seq: number; attempting: boolean; pending_action: string | null }>(
    `SELECT id, message_seq, attempting, pending_action FROM items WHERE state = 'active' AND ${OVER} FOR UPDATE SKIP LOCKED`,
    [now, node],
  );
  if (rows.length === 0) return [];
  const crashed = rows.filter((r) => r.attempting && (r.pending_action === null || r.pending_action === 'suspend'));
  const counts = new Map<number, number>();
  if (crashed.length > 0) {
    const { rows: counted } = await tx.query<{ seq: number; crash_count: number }>(
      'UPDATE messages SET crash_count = crash_count + 1 WHERE seq = ANY($1) RETURNING seq, crash_count',
      [[...new Set(crashed.map((r) => r.message_seq))]],
    );
    for (const c of counted) counts.set(c.seq, c.crash_count);
  }
  const poisoned = new Set<number>();
  for (const item of crashed) {
    const crashes = counts.get(item.message_seq) ?? 0;
    if (crashes < threshold) continue;
    const poisonItem = await toPoison(tx, item.message_seq, reason(crashes, 'delivered', threshold));
    await tx.query('UPDATE recipients SET item_id = $1 WHERE item_id = $2', [poisonItem, item.id]);
    await tx.query('DELETE FROM items WHERE id = $1', [item.id]);
    poisoned.add(item.id);
  }
  const { rows: released } = await tx.query<{ queue: string; state: string; pending_action: string | null }>(
    `UPDATE items SET attempting = false, state = CASE pending_action WHEN 'suspend' THEN 'suspended' ELSE 'ready' END,
       pending_action = nullif(pending_action, 'suspend')
     WHERE id = ANY($1) RETURNING queue, state, pending_action`,
    [rows.filter((r) => !poisoned.has(r.id)).map((r) => r.id)],
  );
  return queueRefs(tx, released.filter((r) => r.state === 'ready' && r.pending_action === null).map((r) => r.queue));
}

/**
 * Takes back every claim whose lease expired by `now` and, given `node`, every claim of that node's earlier
 * processes; returns the delivery queues that got ready items.
 */
export function reclaim(pool: pg.Pool, threshold: number, now: number, node: string | null = null): Promise<{ queues: QueueRef[]; submitted: number }> {
  return transaction(pool, async (tx) => {
    const submitted = await reclaimMessages(tx, threshold, now, node);
    return { queues: await reclaimItems(tx, threshold, now, node), submitted };
  });
}

/** When reclaim would next take something back (any node's lease). */
export async function nextLeaseExpiry(pool: pg.Pool): Promise<number | null> {
  const { rows } = await pool.query<{ at: number | null }>(
    "SELECT least((SELECT min(lease_expires) FROM messages WHERE status = 'Active'), (SELECT min(lease_expires) FROM items WHERE state = 'active')) AS at",
  );
  return rows[0]?.at ?? null;
}
