// The SQLite backend against the store conformance suite, plus what only it has:
// its file layout and pragmas (ST-1..ST-3).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { openSqliteStore } from '../../src/store/sqlite/store.js';
import { tempDir } from '../support/temp.js';
import { describeQueueStore, type OpenStore } from './conformance.js';
import { describeQueueDeadlines } from './conformance-deadlines.js';
import { describeQueueLeases } from './conformance-leases.js';
import { describeQueueOperations } from './conformance-operations.js';
import { TestClock } from '../../src/clock.js';

const openSqlite: OpenStore = (dir, clock) => openSqliteStore({ dataDir: dir, clock, poisonThreshold: 2, owner: 'test/1', leaseTimeout: 60_000 });
describeQueueStore('sqlite', openSqlite);
describeQueueOperations('sqlite', openSqlite);
describeQueueLeases('sqlite', openSqlite);
describeQueueDeadlines('sqlite', openSqlite);

it('sqlite store runs in WAL mode with a versioned schema and names its lease owner', async (t) => {
  const dir = await tempDir(t);
  const store = await openSqlite(dir, new TestClock());
  assert.deepEqual([store.owner, store.leaseTimeout], ['test/1', 60_000]);
  await store.close();
  const db = new Sqlite(join(dir, 'queue.db'), { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.ok((db.pragma('user_version', { simple: true }) as number) >= 1);
});
