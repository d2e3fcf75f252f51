// What the PostgreSQL store tests share: the database (SLUICE_TEST_PG_URL, e.g.
// postgres://postgres@127.0.0.1:5432/test; the tests skip with a message when
// it is unset), and a schema of its own for every location a test opens, so
// test files running in parallel never share tables. The same location maps to
// the same schema, so a reopen finds its data; every schema is dropped when the
// test file ends.
import { createHash } from 'node:crypto';
import { after } from 'node:test';
import pg from 'pg';
import type { TestClock } from '../../src/clock.js';
import { openPostgresStore } from '../../src/store/postgres/store.js';
import type { QueueStore } from '../../src/store/types.js';

export const PG_URL = process.env.SLUICE_TEST_PG_URL;
/** The skip reason when there is no database to test against. */
export const NO_PG = PG_URL ? false : 'SLUICE_TEST_PG_URL is not set: no PostgreSQL to test the PostgreSQL queue store against';

const schemas = new Set<string>();

export function schemaFor(location: string): string {
  const schema = `sluice_test_${createHash('sha256').update(location).digest('hex').slice(0, 16)}`;
  schemas.add(schema);
  return schema;
}

export interface PgStoreOptions {
  owner?: string;
  leaseTimeout?: number;
}

export const openPg = (location: string, clock: TestClock, options: PgStoreOptions = {}): Promise<QueueStore> =>
  openPostgresStore({
    url: PG_URL!,
    schema: schemaFor(location),
    clock,
    poisonThreshold: 2,
    owner: options.owner ?? 'test/1',
    leaseTimeout: options.leaseTimeout ?? 60_000,
    max: 4,
  });

/** Runs statements on a location's schema directly (to look at, or damage, what the store wrote). */
export async function withSchema<T>(location: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schemaFor(location)}` });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

after(async () => {
  if (!PG_URL || schemas.size === 0) return;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
});
