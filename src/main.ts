// Composition root: builds the parts from a validated config and wires them;
// the only place that picks concrete backends.
import type { Clock } from './clock.js';
import type { Config } from './config/schema.js';
import { startListener, type RunningListener } from './intake/listener.js';
import type { Logger } from './observability/logger.js';
import { openSqliteStore } from './store/sqlite/store.js';
import type { QueueStore } from './store/types.js';

export interface Sluice {
  readonly store: QueueStore;
  readonly listeners: RunningListener[];
  /** Graceful stop: listeners stop accepting, then the store closes. */
  stop(): Promise<void>;
}

export async function startSluice(config: Config, deps: { clock: Clock; logger: Logger }): Promise<Sluice> {
  const store = await openSqliteStore({ dataDir: config.dataDir, clock: deps.clock });
  const listeners: RunningListener[] = [];
  try {
    for (const listener of config.listeners) {
      listeners.push(await startListener({ listener, config, store, clock: deps.clock, logger: deps.logger }));
    }
  } catch (error) {
    await Promise.all(listeners.map((l) => l.close()));
    await store.close();
    throw error;
  }
  deps.logger.info({ node: config.node, dataDir: config.dataDir }, 'sluice started');
  return {
    store,
    listeners,
    async stop() {
      await Promise.all(listeners.map((l) => l.close()));
      await store.close();
      deps.logger.info('sluice stopped');
    },
  };
}
