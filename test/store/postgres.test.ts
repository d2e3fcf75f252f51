// The PostgreSQL backend against the store conformance suite (ST-1..ST-5), and
// what only it has: a versioned schema that an older Sluice refuses, and its
// synchronous acceptance transactions. Several instances on one database:
// postgres-cluster.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { SCHEMA_VERSION } from '../../src/store/postgres/migrations.js';
import { describeQueueStore, type OpenStore } from './conformance.js';
import { describeQueueDeadlines } from './conformance-deadlines.js';
import { describeQueueLeases } from './conformance-leases.js';
import { describeQueueOperations } from './conformance-operations.js';
import { NO_PG, openPg, withSchema } from './postgres-support.js';
import { tempDir } from '../support/temp.js';

if (NO_PG) {
  it('PostgreSQL queue store', { skip: NO_PG }, () => undefined);
} else {
  const open: OpenStore = (location, clock) => openPg(location, clock);
  describeQueueStore('postgres', open);
  describeQueueOperations('postgres', open);
  describeQueueLeases('postgres', open);
  describeQueueDeadlines('postgres', open);

  describe('PostgreSQL store schema', () => {
    it('records its schema version and refuses a schema newer than this Sluice (ST-1)', async (t) => {
      const location = await tempDir(t);
      const store = await openPg(location, new TestClock());
      assert.deepEqual([store.owner, store.leaseTimeout], ['test/1', 60_000]);
      await store.close();
      const version = await withSchema(location, async (db) => (await db.query('SELECT version FROM schema_version')).rows[0].version);
      assert.equal(version, SCHEMA_VERSION);
      await withSchema(location, (db) => db.query('UPDATE schema_version SET version = $1', [SCHEMA_VERSION + 1]));
      await assert.rejects(openPg(location, new TestClock()), new RegExp(`schema version ${SCHEMA_VERSION + 1} is newer than this Sluice \\(${SCHEMA_VERSION}\\)`));
    });

    it('opens an up-to-date schema again without changing it, and two nodes migrating at once agree (ST-1)', async (t) => {
      const location = await tempDir(t);
      const clock = new TestClock();
      const [a, b] = await Promise.all([openPg(location, clock, { owner: 'a/1' }), openPg(location, clock, { owner: 'b/1' })]);
      await Promise.all([a.close(), b.close()]);
      const again = await openPg(location, clock);
      await again.close();
      const rows = await withSchema(location, async (db) => (await db.query('SELECT version FROM schema_version')).rows);
      assert.deepEqual(rows, [{ version: SCHEMA_VERSION }]);
    });
  });
}
