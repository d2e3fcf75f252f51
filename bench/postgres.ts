// PostgreSQL for the benchmarks: a fresh schema in the database SLUICE_BENCH_PG_URL names (default
// the local test database), created for one measurement and dropped at clean-up (after the Sluice
// processes that use it have stopped: clean-up steps run last-in first-out), and the messages a
// stopped Sluice left in it counted for the loss check.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { BenchContext } from './run.js';

export const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
/** Schema names of this bench start so: a leftover of a crashed run is easy to find (and drop). */
export const SCHEMA_PREFIX = 'sluice_bench_';

export type StoreName = 'sqlite' | 'postgres';

/** Which store a measured Sluice uses: the embedded SQLite one, or a schema of its own in PostgreSQL. */
export type BenchStore = { backend: 'sqlite' } | { backend: 'postgres'; url: string; schema: string; poolSize?: number };

/** `--store sqlite|postgres|both` as the list of stores to measure, in order. */
export function storesOf(context: BenchContext, value: string | undefined): StoreName[] {
  switch (value ?? 'sqlite') {
    case 'sqlite':
      return ['sqlite'];
    case 'postgres':
      return ['postgres'];
    case 'both':
      return ['sqlite', 'postgres'];
    default:
      throw context.usageError(`--store (SLUICE_BENCH_STORE) must be sqlite, postgres or both, got "${value}"`);
  }
}

export function benchPgUrl(env: NodeJS.ProcessEnv): string {
  return env.SLUICE_BENCH_PG_URL || DEFAULT_PG_URL;
}

/** The URL with an application_name naming the schema, so the clean-up can end the backends still connected to it. */
function taggedUrl(url: string, schema: string): string {
  const tagged = new URL(url);
  tagged.searchParams.set('application_name', schema);
  return tagged.toString();
}

/** The database URL without its password (for the result). */
export function shownUrl(url: string): string {
  const shown = new URL(url);
  if (shown.password) shown.password = '***';
  shown.search = '';
  return shown.toString();
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, statement_timeout: 60_000 } as pg.ClientConfig);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates a fresh, empty schema (`sluice_bench_<tag>_<random>`) and registers its DROP … CASCADE as a
 * clean-up step; returns the store settings for Sluice (its URL carries the schema as application_name).
 */
export type PostgresStore = Extract<BenchStore, { backend: 'postgres' }>;

/** A schema of this run: the store settings, and its drop (idempotent; also a clean-up step). */
export type BenchSchema = PostgresStore & { drop(): Promise<void> };

export async function createBenchSchema(context: BenchContext, tag: string): Promise<BenchSchema> {
  const url = benchPgUrl(context.env);
  const schema = `${SCHEMA_PREFIX}${tag.replace(/[^a-z0-9_]/g, '_')}_${randomBytes(4).toString('hex')}`;
  try {
    await withClient(url, (client) => client.query(`CREATE SCHEMA ${schema}`));
  } catch (error) {
    throw new Error(`cannot create schema ${schema} in ${shownUrl(url)} (SLUICE_BENCH_PG_URL): ${(error as Error).message}`);
  }
  let dropped: Promise<void> | undefined;
  const drop = () => (dropped ??= dropBenchSchema(context, url, schema));
  context.defer(drop);
  context.progress(`postgres: schema ${schema} created in ${shownUrl(url)}`);
  // SLUICE_BENCH_PG_POOL: storage.postgres.poolSize of the bench's nodes (Sluice's default, 8, unless set)
  const poolSize = Number(context.env.SLUICE_BENCH_PG_POOL);
  if (context.env.SLUICE_BENCH_PG_POOL !== undefined && !(Number.isInteger(poolSize) && poolSize > 0)) throw context.usageError(`SLUICE_BENCH_PG_POOL must be a positive integer, got "${context.env.SLUICE_BENCH_PG_POOL}"`);
  return { backend: 'postgres', url: taggedUrl(url, schema), schema, ...(context.env.SLUICE_BENCH_PG_POOL !== undefined ? { poolSize } : {}), drop };
}

/** Ends the backends still connected under the schema's name (a node killed with SIGKILL), then drops it. */
async function dropBenchSchema(context: BenchContext, url: string, schema: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await withClient(url, async (client) => {
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [schema]);
        await client.query("SET lock_timeout = '10s'");
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      });
      context.progress(`postgres: schema ${schema} dropped`);
      return;
    } catch (error) {
      if (attempt >= 3) throw new Error(`could not drop schema ${schema}: ${(error as Error).message}`);
      await sleep(1000);
    }
  }
}

/** Messages still in the schema (delivered ones are removed); read once every node using it has stopped. */
export async function countStoredMessagesPg(store: PostgresStore): Promise<number | string> {
  try {
    return await withClient(store.url, async (client) => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${store.schema}.messages`)).rows[0]!.n));
  } catch (error) {
    return `could not count: ${(error as Error).message}`;
  }
}

/** The server's version and the settings that matter for acceptance (for the result). */
export async function postgresSettings(url: string): Promise<Record<string, string> | string> {
  try {
    return await withClient(url, async (client) => {
      const { rows } = await client.query<{ name: string; setting: string }>(
        "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'synchronous_commit', 'fsync', 'max_connections', 'shared_buffers', 'wal_level')",
      );
      return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
    });
  } catch (error) {
    return `could not read: ${(error as Error).message}`;
  }
}
