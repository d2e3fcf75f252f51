// Numbered schema migrations, applied in order inside one transaction each;
// PRAGMA user_version records the last one applied.
import type { Database } from 'better-sqlite3';

const MIGRATIONS: string[] = [
  // 1: messages in queues, their recipients, body chunks, bodies still arriving.
  `
  CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- receipt order: FIFO per queue (QU-5)
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    mail_from TEXT NOT NULL,
    size INTEGER NOT NULL,
    body_type TEXT,
    smtp_utf8 INTEGER NOT NULL,
    dsn_ret TEXT,
    dsn_envid TEXT,
    source_ip TEXT NOT NULL,
    source_name TEXT NOT NULL,
    helo_name TEXT,
    auth_user TEXT,
    internet_message_id TEXT,
    subject TEXT,
    trace_header BLOB NOT NULL
  );
  CREATE INDEX messages_by_queue ON messages (queue, seq);
  CREATE TABLE recipients (
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    orcpt TEXT,
    notify TEXT,
    status TEXT NOT NULL,
    PRIMARY KEY (message_seq, position)
  ) WITHOUT ROWID;
  CREATE TABLE body_chunks (
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (message_id, seq)
  );
  -- bodies whose message is not committed yet: removed at commit, swept at start (ST-3)
  CREATE TABLE receiving (message_id TEXT PRIMARY KEY) WITHOUT ROWID;
  `,
  // 2: routed items (one per message and next hop, QU-4) in delivery queues.
  `
  ALTER TABLE recipients ADD COLUMN item_id INTEGER;
  ALTER TABLE recipients ADD COLUMN last_reply TEXT;
  CREATE INDEX recipients_by_item ON recipients (item_id) WHERE item_id IS NOT NULL;
  CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,        -- ready | deferred (until due_at) | active (being delivered) | held (Unreachable)
    due_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at INTEGER
  );
  -- FIFO hand-out per queue (QU-5) and due-time promotion, both by index (ST-4)
  CREATE INDEX items_ready ON items (queue, state, message_seq);
  CREATE INDEX items_due ON items (due_at) WHERE state = 'deferred';
  CREATE INDEX items_by_message ON items (message_seq);
  CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    delivery_type TEXT NOT NULL,
    route TEXT,
    message_count INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE TRIGGER items_counted AFTER INSERT ON items
    BEGIN UPDATE queues SET message_count = message_count + 1 WHERE name = NEW.queue; END;
  CREATE TRIGGER items_uncounted AFTER DELETE ON items
    BEGIN UPDATE queues SET message_count = message_count - 1 WHERE name = OLD.queue; END;
  `,
  // 3: deadlines (expiry DL-5, delay notice DL-6) and what delivery reports need (DS-1).
  `
  ALTER TABLE items ADD COLUMN expires_at INTEGER;
  ALTER TABLE items ADD COLUMN delay_at INTEGER;
  ALTER TABLE recipients ADD COLUMN remote_mta TEXT;
  ALTER TABLE recipients ADD COLUMN last_attempt_at INTEGER;
  CREATE INDEX items_expiry ON items (expires_at) WHERE state <> 'active';
  CREATE INDEX items_delay ON items (delay_at) WHERE delay_at IS NOT NULL;
  `,
  // 4: running totals of queued messages and bytes, so back-pressure checks cost O(1) (IN-6).
  `
  CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), messages INTEGER NOT NULL, bytes INTEGER NOT NULL);
  INSERT INTO totals (id, messages, bytes) SELECT 1, count(*), coalesce(sum(size), 0) FROM messages;
  CREATE TRIGGER totals_add AFTER INSERT ON messages
    BEGIN UPDATE totals SET messages = messages + 1, bytes = bytes + NEW.size WHERE id = 1; END;
  CREATE TRIGGER totals_remove AFTER DELETE ON messages
    BEGIN UPDATE totals SET messages = messages - 1, bytes = bytes - OLD.size WHERE id = 1; END;
  `,
  // 5: work in hand at a crash is found by index, so a restart costs the same with 10 or 10M queued.
  `
  CREATE INDEX messages_active ON messages (status) WHERE status = 'Active';
  CREATE INDEX items_active ON items (state) WHERE state = 'active';
  `,
  // 6: operator actions (MG-2, MG-3, IN-7) and the message list they filter (QU-3, MG-1).
  `
  -- suspend | remove | remove-ndr: asked for while the item was being delivered, applied when the attempt ends
  ALTER TABLE items ADD COLUMN pending_action TEXT;
  CREATE INDEX items_pending ON items (pending_action) WHERE pending_action IS NOT NULL;
  ALTER TABLE queues ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE suspended_listeners (name TEXT PRIMARY KEY) WITHOUT ROWID;
  -- the selective filters an operator uses most, case-insensitive like the filter language
  CREATE INDEX messages_by_sender ON messages (mail_from COLLATE NOCASE);
  CREATE INDEX messages_by_message_id ON messages (internet_message_id COLLATE NOCASE);
  -- one row per message and queue: routed items, and messages still in Submission
  CREATE VIEW message_list AS
    SELECT m.seq, items.id AS item_id, m.id, items.queue, m.received_at, items.expires_at, m.mail_from,
      m.internet_message_id, items.last_error, m.source_name, m.source_ip, items.attempts, m.size, m.subject,
      CASE
        WHEN items.pending_action = 'suspend' THEN 'PendingSuspend'
        WHEN items.pending_action IS NOT NULL THEN 'PendingRemove'
        WHEN items.state = 'active' THEN 'Active'
        WHEN items.state = 'deferred' THEN 'Retry'
        WHEN items.state = 'suspended' THEN 'Suspended'
        ELSE 'Ready'
      END AS status
    FROM items JOIN messages m ON m.seq = items.message_seq
    UNION ALL
    SELECT m.seq, NULL, m.id, m.queue, m.received_at, NULL, m.mail_from,
      m.internet_message_id, NULL, m.source_name, m.source_ip, 0, m.size, m.subject, m.status
    FROM messages m WHERE m.queue = 'Submission';
  `,
  // 7: how often the process died with the message in hand (QU-6 Poison queue).
  `
  ALTER TABLE messages ADD COLUMN crash_count INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX messages_suspects ON messages (seq) WHERE crash_count > 0;
  -- 1 while an attempt is on the wire: only those count as in hand at a crash, not the rest of a claimed batch
  ALTER TABLE items ADD COLUMN attempting INTEGER NOT NULL DEFAULT 0;
  `,
  // 8: a queue's Retry state survives a restart (DL-3), and its messages show it (QU-3 status Retry).
  `
  ALTER TABLE queues ADD COLUMN retry_at INTEGER;
  ALTER TABLE queues ADD COLUMN retry_since INTEGER;
  ALTER TABLE queues ADD COLUMN retry_failures INTEGER;
  ALTER TABLE queues ADD COLUMN retry_error TEXT;
  DROP VIEW message_list;
  CREATE VIEW message_list AS
    SELECT m.seq, items.id AS item_id, m.id, items.queue, m.received_at, items.expires_at, m.mail_from,
      m.internet_message_id, coalesce(items.last_error, q.retry_error) AS last_error, m.source_name, m.source_ip, items.attempts, m.size, m.subject,
      CASE
        WHEN items.pending_action = 'suspend' THEN 'PendingSuspend'
        WHEN items.pending_action IS NOT NULL THEN 'PendingRemove'
        WHEN items.state = 'active' THEN 'Active'
        WHEN items.state = 'deferred' THEN 'Retry'
        WHEN items.state = 'suspended' THEN 'Suspended'
        WHEN items.state = 'ready' AND q.retry_at IS NOT NULL THEN 'Retry'
        ELSE 'Ready'
      END AS status
    FROM items JOIN messages m ON m.seq = items.message_seq LEFT JOIN queues q ON q.name = items.queue
    UNION ALL
    SELECT m.seq, NULL, m.id, m.queue, m.received_at, NULL, m.mail_from,
      m.internet_message_id, NULL, m.source_name, m.source_ip, 0, m.size, m.subject, m.status
    FROM messages m WHERE m.queue = 'Submission';
  `,
  // 9: every claim is a lease (ST-5): holder, fencing token, expiry; and since when a queue in Retry is idle (DL-7).
  `
  ALTER TABLE items ADD COLUMN lease_owner TEXT;
  ALTER TABLE items ADD COLUMN lease_token INTEGER;
  ALTER TABLE items ADD COLUMN lease_expires INTEGER;
  ALTER TABLE messages ADD COLUMN lease_owner TEXT;
  ALTER TABLE messages ADD COLUMN lease_token INTEGER;
  ALTER TABLE messages ADD COLUMN lease_expires INTEGER;
  -- claims an older Sluice left behind have no expiry: they are over, like every claim found at open
  UPDATE items SET lease_expires = 0 WHERE state = 'active';
  UPDATE messages SET lease_expires = 0 WHERE status = 'Active';
  -- expired leases by index; they find every claim as the indexes of migration 5 did, which they replace
  CREATE INDEX items_lease_expiry ON items (lease_expires) WHERE state = 'active';
  CREATE INDEX messages_lease_expiry ON messages (lease_expires) WHERE status = 'Active';
  DROP INDEX items_active;
  DROP INDEX messages_active;
  CREATE TABLE claim_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
  INSERT INTO claim_tokens (id, last) VALUES (1, 0);
  ALTER TABLE queues ADD COLUMN idle_since INTEGER;
  -- a queue already in Retry has been idle at least since its Retry began
  UPDATE queues SET idle_since = retry_since WHERE retry_at IS NOT NULL;
  `,
];

export function migrate(db: Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`queue store schema version ${current} is newer than this Sluice (${MIGRATIONS.length}); refusing to open it`);
  }
  MIGRATIONS.slice(current).forEach((sql, index) => {
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${current + index + 1}`);
    })();
  });
}
