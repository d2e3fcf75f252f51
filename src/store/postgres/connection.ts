// Connections to the PostgreSQL queue database: a pool for everything but
// acceptances, whose commits are asynchronous (see group-commit.ts for why that
// loses nothing acknowledged), and the settings every connection shares: the
// schema on the search_path, and 64-bit integers read as numbers (times in ms,
// ids and claim tokens all stay far below 2^53).
import pg from 'pg';

/** What a statement runs on: the pool, or one connection inside a transaction. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface ConnectionOptions {
  url: string;
  /** The schema the store's tables live in; the connection's default search_path when absent. */
  schema?: string;
  /** Connections in the pool. */
  max?: number;
}

const INT8 = 20;
const NUMERIC = 1700;
const types = new pg.TypeOverrides();
types.setTypeParser(INT8, (value: string) => Number(value));
// sum() of bigint columns is numeric
types.setTypeParser(NUMERIC, (value: string) => Number(value));

/** A schema name is an identifier Sluice puts in SQL text, so only plain names are allowed. */
export function checkSchemaName(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}": use lower-case letters, digits and _`);
  return schema;
}

export function clientConfig(options: ConnectionOptions, extraSettings: Record<string, string> = {}): pg.ClientConfig {
  const settings = { ...(options.schema ? { search_path: checkSchemaName(options.schema) } : {}), ...extraSettings };
  const flags = Object.entries(settings).map(([key, value]) => `-c ${key}=${value}`);
  return {
    connectionString: options.url,
    types,
    application_name: 'sluice',
    connectionTimeoutMillis: 10_000,
    ...(flags.length > 0 ? { options: flags.join(' ') } : {}),
  };
}

/** A client's 'error' event goes nowhere: the statement that meets the broken connection fails instead. */
export const ignoreErrors = (client: pg.PoolClient): void => {
  client.on('error', () => undefined);
};

/** The pool of bookkeeping connections: their commits do not wait for the WAL flush. */
export function createPool(options: ConnectionOptions): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(options, { synchronous_commit: 'off' }), max: options.max ?? 8, idleTimeoutMillis: 30_000 });
  // an idle connection the server dropped (restart, admin kill) is replaced at the next use; no crash
  pool.on('error', () => undefined);
  // a connection the server drops while checked out between two statements (a transaction doing its own
  // work) emits an error on the client: its next statement fails, and that failure is handled
  pool.on('connect', ignoreErrors);
  return pool;
}

// a deadlock or serialization failure rolls the transaction back whole: running it again is safe; so does
// a foreign key violation, when another node dropped an empty queue just as this one routed into it
const RETRYABLE = new Set(['40P01', '40001', '23503']);
const ATTEMPTS = 3;

/** Runs `work` in one transaction on one pooled connection, again (up to 3 times) after a deadlock. */
export async function transaction<T>(pool: pg.Pool, work: (tx: Queryable) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await work(client as Queryable);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      const code = (error as { code?: string }).code;
      if (attempt >= ATTEMPTS || !code || !RETRYABLE.has(code)) throw error;
    } finally {
      client.release(broken);
    }
  }
}
