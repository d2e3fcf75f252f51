// Store operations an operator asks for (MG-2, MG-3, IN-7): the filtered
// message list, suspending, resuming and removing routed items (or marking
// claimed ones as PendingSuspend / PendingRemove, for their holder to apply),
// and the suspension of queues and listeners, which survives a restart.
import type { Database } from 'better-sqlite3';
import { POISON_QUEUE, UNREACHABLE_QUEUE, type ListedMessage, type ListedStatus } from '../types.js';
import { filterSql } from './filter-sql.js';
import { CLAIM_ITEM, type Lease, type Leases } from './leases.js';
import { ITEM_COLUMNS, prepareLifecycle, type ItemRow } from './lifecycle.js';
import type { Handlers } from './protocol.js';
import { RECIPIENT_COLUMNS, toStoredRecipient, type RecipientRow } from './rows.js';

type OperatorOps =
  | 'listMessages'
  | 'suspendItems'
  | 'resumeItems'
  | 'claimRemovals'
  | 'claimPendingRemovals'
  | 'setQueueSuspended'
  | 'retryQueue'
  | 'setQueueRetry'
  | 'suspendedListeners'
  | 'setListenerSuspended';

interface ListedRow {
  seq: number;
  item_id: number | null;
  id: string;
  queue: string;
  status: ListedStatus;
  received_at: number;
  expires_at: number | null;
  mail_from: string;
  internet_message_id: string | null;
  last_error: string | null;
  source_name: string;
  source_ip: string;
  attempts: number;
  size: number;
  subject: string | null;
}

export function prepareOperator(db: Database, leases: Leases): Handlers<OperatorOps> {
  const lifecycle = prepareLifecycle(db);
  const itemRecipients = db.prepare<[number], RecipientRow>(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE item_id = ? ORDER BY position`);
  const allRecipients = db.prepare<[number], RecipientRow>(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_seq = ? ORDER BY position`);
  const suspend = db.prepare("UPDATE items SET state = 'suspended' WHERE id = ? AND state IN ('ready', 'deferred', 'held')");
  const markPendingSuspend = db.prepare("UPDATE items SET pending_action = 'suspend' WHERE id = ? AND state = 'active' AND pending_action IS NULL");
  // a removal overrides a pending suspend, never the other way round
  const markPendingRemoval = db.prepare(
    "UPDATE items SET pending_action = ? WHERE id = ? AND state = 'active' AND (pending_action IS NULL OR pending_action = 'suspend')",
  );
  const resume = db.prepare<[number], { queue: string }>(
    `UPDATE items SET state = CASE WHEN queue = '${UNREACHABLE_QUEUE}' THEN 'held' ELSE 'ready' END, due_at = NULL
     WHERE id = ? AND state = 'suspended' AND queue <> '${POISON_QUEUE}' RETURNING queue`,
  );
  const poisoned = db.prepare<[number], { message_seq: number }>(`SELECT message_seq FROM items WHERE id = ? AND queue = '${POISON_QUEUE}'`);
  const cancelPendingSuspend = db.prepare("UPDATE items SET pending_action = NULL WHERE id = ? AND pending_action = 'suspend'");
  const claimForRemoval = db.prepare<Lease & { action: string; id: number }, ItemRow>(
    `UPDATE items SET ${CLAIM_ITEM}, pending_action = @action WHERE id = @id AND state <> 'active' RETURNING ${ITEM_COLUMNS}`,
  );
  const claimPending = db.prepare<Lease & { limit: number }, ItemRow>(`
    UPDATE items SET ${CLAIM_ITEM}
    WHERE id IN (SELECT id FROM items WHERE pending_action IN ('remove', 'remove-ndr') AND state <> 'active' LIMIT @limit)
    RETURNING ${ITEM_COLUMNS}`);
  const setSuspended = db.prepare('UPDATE queues SET suspended = ? WHERE name = ?');
  const retry = db.prepare("UPDATE items SET state = 'ready', due_at = NULL WHERE queue = ? AND state = 'deferred'");
  const setRetry = db.prepare('UPDATE queues SET retry_at = ?, retry_since = ?, retry_failures = ?, retry_error = ?, idle_since = ? WHERE name = ?');
  const listeners = db.prepare<[], { name: string }>('SELECT name FROM suspended_listeners ORDER BY name');
  const addListener = db.prepare('INSERT OR IGNORE INTO suspended_listeners (name) VALUES (?)');
  const removeListener = db.prepare('DELETE FROM suspended_listeners WHERE name = ?');

  return {
    listMessages({ conditions, limit }) {
      // the statement depends on the filter's shape, so it is prepared per request
      const { where, params } = filterSql(conditions);
      const rows = db.prepare<Array<string | number>, ListedRow>(`SELECT * FROM message_list WHERE ${where} ORDER BY seq, item_id LIMIT ?`).all(...params, limit);
      return rows.map((row): ListedMessage => ({
        itemId: row.item_id,
        seq: row.seq,
        id: row.id,
        queue: row.queue,
        status: row.status,
        receivedAt: row.received_at,
        expiresAt: row.expires_at,
        mailFrom: row.mail_from,
        internetMessageId: row.internet_message_id,
        lastError: row.last_error,
        sourceName: row.source_name,
        sourceIp: row.source_ip,
        attempts: row.attempts,
        size: row.size,
        subject: row.subject,
        recipients: (row.item_id === null ? allRecipients.all(row.seq) : itemRecipients.all(row.item_id)).map(toStoredRecipient),
      }));
    },
    suspendItems({ itemIds }) {
      const suspended: number[] = [];
      const pending: number[] = [];
      for (const id of itemIds) {
        if (suspend.run(id).changes > 0) suspended.push(id);
        else if (markPendingSuspend.run(id).changes > 0) pending.push(id);
      }
      return { suspended, pending };
    },
    resumeItems({ itemIds }) {
      let resumed = 0;
      let resubmitted = 0;
      const queues: string[] = [];
      for (const id of itemIds) {
        const poison = poisoned.get(id);
        if (poison) {
          // QU-6: resuming a poison message sends it through the categorizer again
          lifecycle.resubmitItem(id, poison.message_seq);
          resubmitted++;
          continue;
        }
        const row = resume.get(id);
        if (row) {
          resumed++;
          queues.push(row.queue);
        } else {
          resumed += cancelPendingSuspend.run(id).changes;
        }
      }
      return { resumed: resumed + resubmitted, queues: lifecycle.queueRefs(queues), resubmitted };
    },
    claimRemovals({ itemIds, ndr, now }) {
      const action = ndr ? 'remove-ndr' : 'remove';
      const lease = leases.take(now);
      const claimed: ItemRow[] = [];
      const pending: number[] = [];
      for (const id of itemIds) {
        const row = claimForRemoval.get({ ...lease, action, id });
        if (row) claimed.push(row);
        else if (markPendingRemoval.run(action, id).changes > 0) pending.push(id);
      }
      return { claimed: lifecycle.deliveryItems(claimed, lease.token), pending };
    },
    claimPendingRemovals({ limit, now }) {
      const lease = leases.take(now);
      return lifecycle.deliveryItems(claimPending.all({ ...lease, limit }), lease.token);
    },
    setQueueSuspended({ queue, suspended }) {
      return setSuspended.run(suspended ? 1 : 0, queue).changes > 0;
    },
    retryQueue({ queue }) {
      return retry.run(queue).changes;
    },
    setQueueRetry({ queue, retry: state }) {
      setRetry.run(state?.at ?? null, state?.since ?? null, state?.failures ?? null, state?.lastError ?? null, state?.idleSince ?? null, queue);
      return null;
    },
    suspendedListeners() {
      return listeners.all().map((r) => r.name);
    },
    setListenerSuspended({ name, suspended }) {
      (suspended ? addListener : removeListener).run(name);
      return null;
    },
  };
}
