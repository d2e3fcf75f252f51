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
