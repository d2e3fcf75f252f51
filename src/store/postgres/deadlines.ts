// Deadlines on PostgreSQL: expiry (DL-5) and delay notices (DL-6). As in the
// SQLite store, the alarm time (nextDeadline) and what is handed out at it
// (claimExpired, dueDelayNotices) are built from the same two conditions.
import pg from 'pg';
import type { DeliveryItem } from '../types.js';
import { claimItems, leaseParams, NO_CLAIM, type LeaseOptions } from './leases.js';
import { ITEM_COLUMNS, deliveryItems, type ItemRow } from './lifecycle.js';

// a claimed item's expiry waits for its holder: the attempt under way may still deliver it
const EXPIRES_UNCLAIMED = "expires_at IS NOT NULL AND state <> 'active'";
// a notice is due whoever holds the item: it reports on waiting recipients, it does not touch them
const NOTICE_PENDING = 'delay_at IS NOT NULL';

const CLAIM_EXPIRED = claimItems(`SELECT id FROM items WHERE ${EXPIRES_UNCLAIMED} AND expires_at <= $3 ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED`);

export async function claimExpired(pool: pg.Pool, lease: LeaseOptions, now: number, limit: number): Promise<DeliveryItem[]> {
  const { rows } = await pool.query<ItemRow>(CLAIM_EXPIRED, [...leaseParams(lease, now), now, limit]);
  return deliveryItems(pool, rows);
}

/** Read only: the notice's own commit clears it. */
export async function dueDelayNotices(pool: pg.Pool, now: number, limit: number, afterItemId: number): Promise<DeliveryItem[]> {
  const { rows } = await pool.query<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM items WHERE ${NOTICE_PENDING} AND delay_at <= $1 AND id > $2 ORDER BY id LIMIT $3`, [
    now,
    afterItemId,
    limit,
  ]);
  return deliveryItems(pool, rows, NO_CLAIM);
}

export async function clearDelayNotices(pool: pg.Pool, itemIds: number[]): Promise<void> {
  if (itemIds.length > 0) await pool.query('UPDATE items SET delay_at = NULL WHERE id = ANY($1)', [itemIds]);
}

export async function nextDeadline(pool: pg.Pool): Promise<number | null> {
  const { rows } = await pool.query<{ at: number | null }>(
    `SELECT least((SELECT min(expires_at) FROM items WHERE ${EXPIRES_UNCLAIMED}), (SELECT min(delay_at) FROM items WHERE ${NOTICE_PENDING})) AS at`,
  );
  return rows[0]?.at ?? null;
}
