// Choosing and checking the PostgreSQL queue store from the configuration
// (ST-1): the keys, which lease timeout wins, and what `config check` says
// about a database it cannot reach or a schema newer than this Sluice.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../../src/clock.js';
import { parseConfigText } from '../../src/config/load.js';
import { SCHEMA_VERSION } from '../../src/store/postgres/migrations.js';
import { checkQueueStore, leaseTimeoutOf, openQueueStore } from '../../src/store/open.js';
import { tempDir } from '../support/temp.js';
import { NO_PG, PG_URL, schemaFor, withSchema } from './postgres-support.js';

const pgConfig = (url: string, extra = '') => parseConfigText(`node: relay1\nstorage:\n  backend: postgres\n  postgres:\n    url: ${url}\n${extra}`, 'sluice.yaml');

describe('PostgreSQL store configuration', () => {
  it('defaults to SQLite, wants a URL for postgres, and takes storage.postgres.leaseTimeout over storage.leaseTimeout', () => {
    const embedded = parseConfigText('', 'embedded default');
    assert.deepEqual([embedded.storage.backend, leaseTimeoutOf(embedded)], ['sqlite', 30_000]);
    assert.throws(() => parseConfigText('storage:\n  backend: postgres\n', 'sluice.yaml'), /storage\.postgres\.url.*required with storage\.backend: postgres/);
    assert.throws(() => pgConfig('postgres://db/sluice', '    schema: Bad-Name\n'), /storage\.postgres\.schema/);
    assert.equal(leaseTimeoutOf(pgConfig('postgres://db/sluice')), 30_000);
    assert.equal(leaseTimeoutOf(pgConfig('postgres://db/sluice', '    leaseTimeout: 45s\n')), 45_000);
  });

  it('config check names a database it cannot reach, without its password', async () => {
    const check = await checkQueueStore(pgConfig('postgres://sluice:secret@127.0.0.1:1/sluice'));
    assert.equal(check?.ok, false);
    assert.match(check!.message, /cannot reach the PostgreSQL queue store at postgres:\/\/sluice:\*\*\*@127\.0\.0\.1:1\/sluice/);
    assert.doesNotMatch(check!.message, /secret/);
    assert.equal(await checkQueueStore(parseConfigText('', 'embedded default')), undefined, 'nothing to reach for SQLite');
  });

  it('config check reports the schema version, and one newer than this Sluice as an error', { skip: NO_PG }, async (t) => {
    const location = await tempDir(t);
    const config = pgConfig(PG_URL!, `    schema: ${schemaFor(location)}\n`);
    assert.match((await checkQueueStore(config))!.message, /reachable, no queue tables yet/);
    const store = await openQueueStore(config, new TestClock(), 'relay1/1');
    assert.equal(store.owner, 'relay1/1');
    await store.close();
    assert.deepEqual(await checkQueueStore(config), { ok: true, message: `PostgreSQL queue store at ${new URL(PG_URL!).toString()} (schema ${schemaFor(location)}): reachable, schema version ${SCHEMA_VERSION}` });
    await withSchema(location, (db) => db.query('UPDATE schema_version SET version = version + 1'));
    const newer = await checkQueueStore(config);
    assert.equal(newer?.ok, false);
    assert.match(newer!.message, new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this Sluice \\(${SCHEMA_VERSION}\\)`));
  });
});
