// Opens the queue database: a quick integrity check, WAL, synchronous=FULL, migrations, the sweep of
// bodies left half-written by a crash, and the recovery of work in hand (ST-2,
// ST-3, QU-6). Runs in the store worker.
import type { Database } from 'better-sqlite3';
import { DamagedStoreError, findProblems, openChecked } from './integrity.js';
import { migrate } from './migrations.js';
import type { WorkerOptions } from './protocol.js';
import { EVERY_LEASE, prepareReclaim } from './recovery.js';

export function openDatabase(options: WorkerOptions): Database {
  const db = openChecked(options.path);
  const problems = findProblems(db, false);
  if (problems.length > 0) {
    db.close();
    throw new DamagedStoreError(options.path, problems.join('; '));
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Checkpoints are run by the worker itself, after its replies (see worker.ts).
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('journal_size_limit = 67108864');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  sweepPartialBodies(db);
  // no other process opens this file, so every claim in it belonged to one that died
  db.transaction(() => prepareReclaim(db, options.poisonThreshold).reclaim(EVERY_LEASE))();
  return db;
}

/** Bodies of messages that were never committed are invisible; at start they are deleted. */
function sweepPartialBodies(db: Database): number {
  return db.transaction(() => {
    const swept = db.prepare('DELETE FROM body_chunks WHERE message_id IN (SELECT message_id FROM receiving)').run().changes;
    db.prepare('DELETE FROM receiving').run();
    return swept;
  })();
}
