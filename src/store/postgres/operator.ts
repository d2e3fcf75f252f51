// What an operator asks of the PostgreSQL store (MG-2, MG-3, IN-7), on any
// node for the whole cluster: the filtered message list, suspending, resuming
// and removing routed items (or marking claimed ones PendingSuspend /
// PendingRemove for their holder, on whatever node, to apply), and queue
// state, which every node's claims obey. Listener suspension stays per node.
import pg from 'pg';
import { POISON_QUEUE, UNREACHABLE_QUEUE, type Condition, type DeliveryItem, type ListedMessage, type QueueRetry } from '../types.js';
import { RECIPIENT_COLUMNS, toStoredRecipient, type RecipientRow } from '../sqlite/rows.js';
import { transaction } from './connection.js';
import { pgFilter } from './filter-sql.js';
import { claimItems, leaseParams, type LeaseOptions } from './leases.js';
import { deliveryItems, queueRefs, resubmitItems, type ItemRow } from './lifecycle.js';

// named as ListedMessage names them, so a row is a listed message but for its recipients
const LISTED_COLUMNS =
  'seq, item_id AS "itemId", id, queue, status, received_at AS "receivedAt", expires_at AS "expiresAt", mail_from AS "mailFrom", ' +
  'internet_message_id AS "internetMessageId", last_error AS "lastError", source_name AS "sourceName", source_ip AS "sourceIp", attempts, size, subject';
type ListedRow = Omit<ListedMessage, 'recipients'> & { seq: number };

/** Items in the order the caller named them. */
const inOrder = <T extends { id: number }>(ids: number[], rows: T[]): T[] => {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
};
const idsOf = (rows: Array<{ id: number }>): Set<number> => new Set(rows.map((r) => r.id));

export async function listMessages(pool: pg.Pool, conditions: Condition[], limit: number): Promise<ListedMessage[]> {
  const { where, params } = pgFilter(conditions, 2);
  const { rows } = await pool.query<ListedRow>(`SELECT ${LISTED_COLUMNS} FROM message_list WHERE ${where} ORDER BY seq, item_id NULLS FIRST LIMIT $1`, [limit, ...params]);
  if (rows.length === 0) return [];
  const recipients = await pool.query<RecipientRow & { message_seq: number; item_id: number | null }>(
    `SELECT message_seq, item_id, ${RECIPIENT_COLUMNS} FROM recipients WHERE message_seq = ANY($1) ORDER BY position`,
    [[...new Set(rows.map((r) => r.seq))]],
  );
  // in Submission, all of them; in a delivery queue, the ones its item carries
  return rows.map(({ seq, ...row }): ListedMessage => ({
    ...row,
    seq: Number(seq),
    recipients: recipients.rows.filter((r) => r.message_seq === seq && (row.itemId === null || r.item_id === row.itemId)).map(toStoredRecipient),
  }));
}

export function suspendItems(pool: pg.Pool, itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }> {
  return transaction(pool, async (tx) => {
    const now = await tx.query<{ id: number }>("UPDATE items SET state = 'suspended' WHERE id = ANY($1) AND state IN ('ready', 'deferred', 'held') RETURNING id", [itemIds]);
    const later = await tx.query<{ id: number }>("UPDATE items SET pending_action = 'suspend' WHERE id = ANY($1) AND state = 'active' AND pending_action IS NULL RETURNING id", [
      itemIds,
    ]);
    const [suspended, pending] = [idsOf(now.rows), idsOf(later.rows)];
    return { suspended: itemIds.filter((id) => suspended.has(id)), pending: itemIds.filter((id) => pending.has(id)) };
  });
}

export function resumeItems(pool: pg.Pool, itemIds: number[]) {
  return transaction(pool, async (tx) => {
    // QU-6: resuming a poison message sends it through the categorizer again
    const poison = await tx.query<{ id: number; message_seq: number }>(`SELECT id, message_seq FROM items WHERE id = ANY($1) AND queue = '${POISON_QUEUE}' FOR UPDATE`, [itemIds]);
    await resubmitItems(tx, poison.rows);
    const resumed = await tx.query<{ id: number; queue: string }>(
      `UPDATE items SET state = CASE WHEN queue = '${UNREACHABLE_QUEUE}' THEN 'held' ELSE 'ready' END, due_at = NULL
       WHERE id = ANY($1) AND state = 'suspended' AND queue <> '${POISON_QUEUE}' RETURNING id, queue`,
      [itemIds],
    );
    const cancelled = await tx.query("UPDATE items SET pending_action = NULL WHERE id = ANY($1) AND pending_action = 'suspend'", [itemIds]);
    const resubmitted = poison.rows.length;
    const queues = await queueRefs(tx, inOrder(itemIds, resumed.rows).map((r) => r.queue));
    return { resumed: resumed.rows.length + (cancelled.rowCount ?? 0) + resubmitted, queues, resubmitted };
  });
}

/** Unclaimed items are claimed for removal at once; claimed ones become PendingRemove, for their holder. */
export function claimRemovals(pool: pg.Pool, lease: LeaseOptions, itemIds: number[], ndr: boolean, now: number): Promise<{ claimed: DeliveryItem[]; pending: number[] }> {
  const action = ndr ? 'remove-ndr' : 'remove';
  return transaction(pool, async (tx) => {
    const { rows } = await tx.query<ItemRow>(claimItems("SELECT id FROM items WHERE id = ANY($3) AND state <> 'active' FOR UPDATE", ', pending_action = $4'), [
      ...leaseParams(lease, now),
      itemIds,
      action,
    ]);
    const claimedIds = idsOf(rows);
    // a removal overrides a pending suspend, never the other way round
    const marked = await tx.query<{ id: number }>(
      "UPDATE items SET pending_action = $2 WHERE id = ANY($1) AND state = 'active' AND (pending_action IS NULL OR pending_action = 'suspend') RETURNING id",
      [itemIds.filter((id) => !claimedIds.has(id)), action],
    );
    const pending = idsOf(marked.rows);
    return { claimed: await deliveryItems(tx, inOrder(itemIds, rows)), pending: itemIds.filter((id) => pending.has(id)) };
  });
}

const CLAIM_PENDING_REMOVALS = claimItems("SELECT id FROM items WHERE pending_action IN ('remove', 'remove-ndr') AND state <> 'active' LIMIT $3 FOR UPDATE SKIP LOCKED");

export async function claimPendingRemovals(pool: pg.Pool, lease: LeaseOptions, limit: number, now: number): Promise<DeliveryItem[]> {
  const { rows } = await pool.query<ItemRow>(CLAIM_PENDING_REMOVALS, [...leaseParams(lease, now), limit]);
  return deliveryItems(pool, rows);
}

/** The queue's route (null for one without), or undefined when there is no such queue. */
export async function setQueueSuspended(pool: pg.Pool, queue: string, suspended: boolean): Promise<{ route: string | null } | undefined> {
  const { rows } = await pool.query<{ route: string | null }>('UPDATE queues SET suspended = $1 WHERE name = $2 RETURNING route', [suspended, queue]);
  return rows[0];
}

export async function setQueueRetry(pool: pg.Pool, queue: string, retry: QueueRetry | null): Promise<{ route: string | null } | undefined> {
  const { rows } = await pool.query<{ route: string | null }>('UPDATE queues SET retry_at = $1, retry_since = $2, retry_failures = $3, retry_error = $4, idle_since = $5 WHERE name = $6 RETURNING route', [
    retry?.at ?? null,
    retry?.since ?? null,
    retry?.failures ?? null,
    retry?.lastError ?? null,
    retry?.idleSince ?? null,
    queue,
  ]);
  return rows[0];
}

export async function retryQueue(pool: pg.Pool, queue: string): Promise<number> {
  const { rowCount } = await pool.query("UPDATE items SET state = 'ready', due_at = NULL WHERE queue = $1 AND state = 'deferred'", [queue]);
  return rowCount ?? 0;
}

export async function suspendedListeners(pool: pg.Pool, node: string): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>('SELECT name FROM suspended_listeners WHERE node = $1 ORDER BY name', [node]);
  return rows.map((r) => r.name);
}

export async function setListenerSuspended(pool: pg.Pool, node: string, name: string, suspended: boolean): Promise<void> {
  await pool.query(
    suspended ? 'INSERT INTO suspended_listeners (node, name) VALUES ($1, $2) ON CONFLICT DO NOTHING' : 'DELETE FROM suspended_listeners WHERE node = $1 AND name = $2',
    [node, name],
  );
}
