// What `sluice config check` says about a PostgreSQL queue store: whether the
// database answers, and whether its schema is one this Sluice can open, without
// changing anything in it.
import pg from 'pg';
import { clientConfig, type ConnectionOptions, type Queryable } from './connection.js';
import { SCHEMA_VERSION, schemaVersion } from './migrations.js';

export type StoreCheck = { ok: boolean; message: string };

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

export async function checkPostgresStore(options: ConnectionOptions): Promise<StoreCheck> {
  const where = `${redactUrl(options.url)}${options.schema ? ` (schema ${options.schema})` : ''}`;
  const client = new pg.Client({ ...clientConfig(options), connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    return { ok: false, message: `cannot reach the PostgreSQL queue store at ${where}: ${(error as Error).message || String(error)}` };
  }
  try {
    const version = await schemaVersion(client as Queryable);
    if (version > SCHEMA_VERSION) {
      return { ok: false, message: `the PostgreSQL queue store at ${where} has schema version ${version}, newer than this Sluice (${SCHEMA_VERSION}): run the newer Sluice, or restore a database of this version` };
    }
    const state = version === 0 ? 'no queue tables yet (the first start creates them)' : version < SCHEMA_VERSION ? `schema version ${version} (the next start migrates it to ${SCHEMA_VERSION})` : `schema version ${version}`;
    return { ok: true, message: `PostgreSQL queue store at ${where}: reachable, ${state}` };
  } catch (error) {
    return { ok: false, message: `cannot read the PostgreSQL queue store at ${where}: ${(error as Error).message}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}
