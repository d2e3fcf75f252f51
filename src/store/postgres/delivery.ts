// Delivery's store operations on PostgreSQL: hand out the oldest ready items
// of a queue (FIFO, QU-5) under a lease, with SKIP LOCKED so nodes draining the
// same queue take different items; record each attempt (DL-2); bring deferred
// items back when their time comes. Every write about a claimed item is fenced
// by its claim token (ST-5).
import pg from 'pg';
import type { AttemptStart, ClaimRef, DeliveryItem, PendingAction, QueueRef, RecipientOutcome } from '../types.js';
import { transaction } from './connection.js';
import { claimItems, heldItem, leaseParams, type LeaseOptions } from './leases.js';
import { ITEM_COLUMNS, deliveryItems, queueRefs, retireIfDone, type ItemRow } from './lifecycle.js';

const STATUS_OF: Record<RecipientOutcome['result'], string> = { delivered: 'Delivered', failed: 'Failed', deferred: 'Ready' };

// the queue's state is checked in the claim itself, so no node hands out items of a queue suspended or in
// Retry (MG-2, DL-3) on any node, whatever it believed about the queue
const CLAIM = claimItems(`
  SELECT id FROM items WHERE queue = $3 AND state = 'ready' AND pending_action IS NULL
    AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $3 AND (suspended OR retry_at > $5))
  ORDER BY message_seq LIMIT $4 FOR UPDATE SKIP LOCKED`);

// deferred recipients wait; an operator's pending action decides where the item goes (MG-3): a removal keeps
// it claimed, under the same lease, for the caller to carry out
const DEFER = `
  UPDATE items SET attempting = false, due_at = $2, attempts = attempts + 1, last_error = $3,
    state = CASE pending_action WHEN 'suspend' THEN 'suspended' WHEN 'remove' THEN 'active' WHEN 'remove-ndr' THEN 'active' ELSE 'deferred' END,
    pending_action = nullif(pending_action, 'suspend')
  WHERE id = $1`;

/** Bound as two arrays: only the fields of a reference, whatever the caller passes as one. */
const refArrays = (refs: ClaimRef[]): [number[], number[]] => [refs.map((r) => r.itemId), refs.map((r) => r.claim)];
const HELD_REFS = `FROM unnest($1::bigint[], $2::bigint[]) AS ref(id, claim) WHERE items.id = ref.id AND ${heldItem('ref.claim')}`;

export async function claimDeliveries(pool: pg.Pool, lease: LeaseOptions, queue: string, limit: number, now: number): Promise<DeliveryItem[]> {
  const { rows } = await pool.query<ItemRow>(CLAIM, [...leaseParams(lease, now), queue, limit, now]);
  rows.sort((a, b) => a.message_seq - b.message_seq);
  return deliveryItems(pool, rows);
}

export async function beginAttempt(pool: pg.Pool, ref: ClaimRef, now: number): Promise<AttemptStart> {
  // the operator's action wins over the attempt; no attempt begins, so no crash can count for it
  const { rows } = await pool.query<{ pending_action: PendingAction | null }>(
    `UPDATE items SET attempting = (pending_action IS NULL), last_attempt_at = CASE WHEN pending_action IS NULL THEN $3 ELSE last_attempt_at END
     WHERE id = $1 AND ${heldItem('$2')} RETURNING pending_action`,
    [ref.itemId, ref.claim, now],
  );
  const row = rows[0];
  return row ? (row.pending_action ?? 'go') : 'lost';
}

export async function recordDelivery(pool: pg.Pool, ref: ClaimRef, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null | 'lost'> {
  return transaction(pool, async (tx) => {
    // the item and its message are locked together, so another node finishing the message's last other item waits
    const held = await tx.query<{ message_seq: number; pending_action: PendingAction | null }>(
      `SELECT items.message_seq, items.pending_action FROM items JOIN messages ON messages.seq = items.message_seq
       WHERE items.id = $1 AND ${heldItem('$2')} FOR UPDATE`,
      [ref.itemId, ref.claim],
    );
    const item = held.rows[0];
    if (!item) return 'lost';
    await tx.query(
      `UPDATE recipients SET status = o.status, last_reply = o.reply, remote_mta = o.mta, last_attempt_at = $2
       FROM unnest($3::integer[], $4::text[], $5::text[], $6::text[]) AS o(position, status, reply, mta)
       WHERE recipients.message_seq = $1 AND recipients.position = o.position`,
      [item.message_seq, now, outcomes.map((o) => o.position), outcomes.map((o) => STATUS_OF[o.result]), outcomes.map((o) => o.reply), outcomes.map((o) => o.remoteMta ?? null)],
    );
    const left = await tx.query<{ n: number }>("SELECT count(*) AS n FROM recipients WHERE item_id = $1 AND status = 'Ready'", [ref.itemId]);
    if (left.rows[0]!.n > 0) {
      await tx.query(DEFER, [ref.itemId, retryAt, outcomes.find((o) => o.result === 'deferred')?.reply ?? null]);
      return item.pending_action;
    }
    await tx.query('DELETE FROM items WHERE id = $1', [ref.itemId]);
    await retireIfDone(tx, item.message_seq);
    return null;
  });
}

/** Puts claimed items back first in line; a pending suspend is applied, pending removals come back still claimed. */
export async function releaseDeliveries(pool: pg.Pool, refs: ClaimRef[]): Promise<{ removals: DeliveryItem[]; ready: QueueRef[] }> {
  if (refs.length === 0) return { removals: [], ready: [] };
  const { rows } = await pool.query<ItemRow & { state: string }>(
    `UPDATE items SET state = CASE WHEN pending_action IS NULL THEN 'ready' WHEN pending_action = 'suspend' THEN 'suspended' ELSE 'active' END,
       pending_action = nullif(pending_action, 'suspend')
     ${HELD_REFS} RETURNING ${ITEM_COLUMNS}, items.state`,
    refArrays(refs),
  );
  const order = new Map(refs.map((r, i) => [r.itemId, i]));
  const removals = rows.filter((r) => r.pending_action !== null).sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  const ready = rows.filter((r) => r.state === 'ready').map((r) => r.queue);
  return { removals: await deliveryItems(pool, removals), ready: ready.length > 0 ? await queueRefs(pool, ready) : [] };
}

/** Extends leases to now + leaseTimeout; returns the references that were lost. */
export async function renewLeases(pool: pg.Pool, lease: LeaseOptions, refs: ClaimRef[], now: number): Promise<ClaimRef[]> {
  if (refs.length === 0) return [];
  const { rows } = await pool.query<{ id: number; claim: number }>(`UPDATE items SET lease_expires = $3 ${HELD_REFS} RETURNING ref.id, ref.claim`, [
    ...refArrays(refs),
    leaseParams(lease, now)[1],
  ]);
  // by reference, not by item: a stale claim on an item someone else holds now is lost
  const renewed = new Set(rows.map((r) => `${r.id}:${r.claim}`));
  return refs.filter((r) => !renewed.has(`${r.itemId}:${r.claim}`)).map(({ itemId, claim }) => ({ itemId, claim }));
}

export async function promoteDue(pool: pg.Pool, now: number): Promise<QueueRef[]> {
  const { rows } = await pool.query<{ queue: string }>("UPDATE items SET state = 'ready', due_at = NULL WHERE state = 'deferred' AND due_at <= $1 RETURNING queue", [now]);
  return queueRefs(pool, rows.map((r) => r.queue));
}

export async function nextDueTime(pool: pg.Pool): Promise<number | null> {
  const { rows } = await pool.query<{ due: number | null }>("SELECT min(due_at) AS due FROM items WHERE state = 'deferred'");
  return rows[0]?.due ?? null;
}

/** Forgets a delivery queue with nothing left in it (QU-1); an item routed into it meanwhile keeps it. */
export async function dropQueueIfEmpty(pool: pg.Pool, queue: string): Promise<boolean> {
  try {
    const { rowCount } = await pool.query('DELETE FROM queues WHERE name = $1 AND NOT suspended AND NOT EXISTS (SELECT 1 FROM items WHERE queue = $1)', [queue]);
    return (rowCount ?? 0) > 0;
  } catch (error) {
    if ((error as { code?: string }).code === '23503') return false;
    throw error;
  }
}
