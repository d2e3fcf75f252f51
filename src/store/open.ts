// Opens the queue store the configuration names (ST-1): the embedded SQLite
// store in dataDir (the default), or the PostgreSQL store several nodes share.
// Claims belong to `<node>/<pid>`.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { checkPostgresStore, type StoreCheck } from './postgres/check.js';
import { openPostgresStore } from './postgres/store.js';
import { openSqliteStore } from './sqlite/store.js';
import type { QueueStore } from './types.js';

/** How long a claim lasts unless renewed, in ms (`storage.postgres.leaseTimeout` overrides it for that backend). */
export function leaseTimeoutOf(config: Config): number {
  const { storage } = config;
  return storage.backend === 'postgres' ? (storage.postgres.leaseTimeout ?? storage.leaseTimeout) : storage.leaseTimeout;
}

/** The connection of a PostgreSQL store, or undefined for the embedded one. */
function postgresOf(config: Config) {
  const { backend, postgres } = config.storage;
  if (backend !== 'postgres') return undefined;
  // the schema refines this away; a Config built by hand may still lack it
  if (postgres.url === undefined) throw new Error('storage.postgres.url is required with storage.backend: postgres');
  return { url: postgres.url, max: postgres.poolSize, ...(postgres.schema === undefined ? {} : { schema: postgres.schema }) };
}

export function openQueueStore(config: Config, clock: Clock, owner = `${config.node}/${process.pid}`): Promise<QueueStore> {
  const common = { clock, poisonThreshold: config.poison.crashThreshold, owner, leaseTimeout: leaseTimeoutOf(config) };
  const postgres = postgresOf(config);
  return postgres ? openPostgresStore({ ...common, ...postgres }) : openSqliteStore({ ...common, dataDir: config.dataDir });
}

/** For `config check`: whether the configured store can be opened, without opening it (nothing to say for SQLite). */
export async function checkQueueStore(config: Config): Promise<StoreCheck | undefined> {
  const postgres = postgresOf(config);
  return postgres ? checkPostgresStore(postgres) : undefined;
}
