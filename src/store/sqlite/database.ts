// Opens the queue database: WAL, synchronous=FULL, migrations, and the sweep of
// bodies left half-written by a crash (ST-2, ST-3). Runs in the store worker.
import Sqlite, { type Database } from 'better-sqlite3';
import { migrate } from './migrations.js';

export function openDatabase(path: string): Database {
  const db = new Sqlite(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Checkpoints are run by the worker itself, always with synchronous=FULL
  // (see worker.ts): batches that hold no commit are written without fsync.
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('journal_size_limit = 67108864');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  sweepPartialBodies(db);
  releaseClaims(db);
  return db;
}

/**
 * Work that was in hand when the process stopped is handed out again (at-least-once). An operator's
 * pending suspend takes effect; a pending removal waits for claimPendingRemovals.
 */
function releaseClaims(db: Database): void {
  db.prepare("UPDATE messages SET status = 'Ready' WHERE status = 'Active'").run();
  db.prepare(`
    UPDATE items SET state = CASE pending_action WHEN 'suspend' THEN 'suspended' ELSE 'ready' END,
      pending_action = CASE pending_action WHEN 'suspend' THEN NULL ELSE pending_action END
    WHERE state = 'active'`).run();
}

/** Bodies of messages that were never committed are invisible; at start they are deleted. */
function sweepPartialBodies(db: Database): number {
  return db.transaction(() => {
    const swept = db.prepare('DELETE FROM body_chunks WHERE message_id IN (SELECT message_id FROM receiving)').run().changes;
    db.prepare('DELETE FROM receiving').run();
    return swept;
  })();
}
