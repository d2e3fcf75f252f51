// The categorizer's store operations on PostgreSQL: lease the oldest messages
// from Submission (SKIP LOCKED, so nodes share the work) and turn each into
// routed items, one per next hop (RT-1, QU-4); a decision is applied only while
// its claim still holds the message (ST-5).
import pg from 'pg';
import { SUBMISSION_QUEUE, type RoutingDecision, type StoredMessage } from '../types.js';
import type { MessageRow } from '../sqlite/rows.js';
import { transaction } from './connection.js';
import { claimMessages, heldMessage, leaseParams, type LeaseOptions } from './leases.js';
import { resubmitItems, retireIfDone, withRecipients } from './lifecycle.js';

/** A message whose recipients all went to routed items: it is in their queues, no longer in Submission. */
export const ROUTED = 'Routed';

const WAITING = `queue = '${SUBMISSION_QUEUE}' AND status = 'Ready'`;
// a message that was in hand at a crash comes alone, so that a poison message takes no other with it
const CLAIM_SUSPECT = claimMessages(`SELECT seq FROM messages WHERE crash_count > 0 AND ${WAITING} ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED`);
const CLAIM = claimMessages(`SELECT seq FROM messages WHERE ${WAITING} ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED`);

// an unchanged queue row is neither written nor locked: every node routes into the same hot queues
const UPSERT_QUEUE =
  'WITH added AS (INSERT INTO queues (name, delivery_type, route) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING) ' +
  'UPDATE queues SET delivery_type = $2, route = $3 WHERE name = $1 AND (delivery_type IS DISTINCT FROM $2 OR route IS DISTINCT FROM $3)';

type Claimed = { message: StoredMessage; positions: number[]; claim: number };

export async function claimSubmission(pool: pg.Pool, lease: LeaseOptions, limit: number, now: number): Promise<Claimed[]> {
  const params = leaseParams(lease, now);
  let { rows } = await pool.query<MessageRow & { lease_token: number }>(CLAIM_SUSPECT, params);
  if (rows.length === 0) ({ rows } = await pool.query<MessageRow & { lease_token: number }>(CLAIM, [...params, limit]));
  if (rows.length === 0) return [];
  rows.sort((a, b) => a.seq - b.seq);
  const messages = await withRecipients(pool, rows);
  // recipients already in an item (a message resubmitted from one of its queues) are not routed again
  const { rows: toRoute } = await pool.query<{ message_seq: number; position: number }>(
    "SELECT message_seq, position FROM recipients WHERE message_seq = ANY($1) AND status = 'Ready' AND item_id IS NULL ORDER BY position",
    [rows.map((r) => r.seq)],
  );
  return messages.map((message, i) => ({
    message,
    positions: toRoute.filter((r) => r.message_seq === rows[i]!.seq).map((r) => r.position),
    claim: rows[i]!.lease_token,
  }));
}

export async function routeMessages(pool: pg.Pool, decisions: RoutingDecision[]): Promise<void> {
  await transaction(pool, async (tx) => {
    for (const { messageId, claim, items, failures } of decisions) {
      // a message removed meanwhile, or taken back from a categorizer that held it too long, is not this decision's
      const held = await tx.query<{ seq: number }>(`SELECT seq FROM messages WHERE id = $1 AND ${heldMessage('$2')} FOR UPDATE`, [messageId, claim]);
      const seq = held.rows[0]?.seq;
      if (seq === undefined) continue;
      for (const item of items) {
        await tx.query(
          UPSERT_QUEUE,
          [item.queue, item.deliveryType, item.route],
        );
        const state = item.deliveryType === 'Unreachable' ? 'held' : 'ready';
        await tx.query(
          'WITH item AS (INSERT INTO items (message_seq, queue, state, last_error, expires_at, delay_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) ' +
            'UPDATE recipients SET item_id = (SELECT id FROM item) WHERE message_seq = $1 AND position = ANY($7)',
          [seq, item.queue, state, item.lastError ?? null, item.expiresAt, item.delayAt, item.recipients],
        );
      }
      for (const failure of failures) {
        await tx.query("UPDATE recipients SET status = 'Failed', last_reply = $1 WHERE message_seq = $2 AND position = $3", [failure.reply, seq, failure.position]);
      }
      // routed without a crash: a count from a batch that crashed around it no longer points at it
      await tx.query(`UPDATE messages SET queue = '${ROUTED}', status = 'Ready', crash_count = 0 WHERE seq = $1`, [seq]);
      await retireIfDone(tx, seq);
    }
  });
}

export async function releaseSubmission(pool: pg.Pool, claims: Array<{ messageId: string; claim: number }>): Promise<void> {
  if (claims.length === 0) return;
  await pool.query(
    `UPDATE messages SET status = 'Ready' FROM unnest($1::text[], $2::bigint[]) AS c(id, claim) WHERE messages.id = c.id AND ${heldMessage('c.claim')}`,
    [claims.map((c) => c.messageId), claims.map((c) => c.claim)],
  );
}

/** A queue's waiting messages back to Submission (DL-7); suspended items and those an operator acted on stay. */
export async function resubmitQueue(pool: pg.Pool, queue: string): Promise<number> {
  return transaction(pool, async (tx) => {
    const { rows } = await tx.query<{ id: number; message_seq: number }>(
      "SELECT id, message_seq FROM items WHERE queue = $1 AND state IN ('ready', 'deferred', 'held') AND pending_action IS NULL FOR UPDATE SKIP LOCKED",
      [queue],
    );
    await resubmitItems(tx, rows);
    return rows.length;
  });
}
