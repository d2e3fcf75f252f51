// What an operator (or a reload) does to a delivery queue (MG-2, DL-7, RT-3):
// suspend, resume, retry now, resubmit to the categorizer, reconnect with new
// settings. Suspension and Retry are kept in the store, where the claim
// enforces them (ST-5); this file only keeps the engine in step.
import type { Clock } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { QueueRetry, QueueStore } from '../store/types.js';
import type { ConnectionPool, Hop } from './connection-pool.js';
import { releaseItems, type OutcomeDeps } from './outcomes.js';
import { afterRetryNow } from './queue-state.js';

export interface QueueActions {
  /** MG-2: no connection takes more from the queue (those in an attempt finish it); kept across restarts. False if there is no such queue. */
  suspend(queue: string): Promise<boolean>;
  resume(queue: string): Promise<boolean>;
  /** MG-2: connect now, and make the queue's deferred messages ready; returns how many were made ready. */
  retryNow(queue: string): Promise<number>;
  /** MG-2, DL-7: sends the queue's waiting messages back to the categorizer; returns how many. */
  resubmit(queue: string): Promise<number>;
  /** RT-3: the next hop's settings changed: open connections finish their item and the next ones use the new settings. */
  reconnect(queue: string): void;
}

export function createQueueActions(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  pool: ConnectionPool;
  outcomes: OutcomeDeps;
  onResubmitted: () => void;
  setRetry: (hop: Hop, retry: QueueRetry | null) => void;
  hopNamed: (name: string) => Promise<Hop | undefined>;
}): QueueActions {
  const { store, pool, logger } = deps;
  const handBack = (hop: Hop) => releaseItems(deps.outcomes, hop.ready.drain());

  async function setSuspended(name: string, suspended: boolean): Promise<boolean> {
    if (!(await store.setQueueSuspended(name, suspended))) return false;
    logger.warn({ queue: name }, suspended ? 'queue suspended' : 'queue resumed');
    const hop = await deps.hopNamed(name);
    if (!hop) return true;
    hop.state = { ...hop.state, suspended };
    if (suspended) {
      pool.closeIdle(hop);
      await handBack(hop);
    } else {
      pool.kick(hop);
    }
    return true;
  }

  return {
    suspend: (name) => setSuspended(name, true),
    resume: (name) => setSuspended(name, false),
    async retryNow(name) {
      const ready = await store.retryQueue(name);
      const hop = await deps.hopNamed(name);
      if (hop) {
        if (hop.state.retry) deps.setRetry(hop, afterRetryNow(hop.state, deps.clock.now()));
        pool.kick(hop);
      }
      return ready;
    },
    async resubmit(name) {
      const hop = await deps.hopNamed(name);
      if (hop) {
        if (hop.state.retry) deps.setRetry(hop, null);
        await handBack(hop);
      }
      const count = await store.resubmitQueue(name);
      logger.warn({ queue: name, messages: count, lastError: hop?.lastError }, 'queue resubmitted');
      deps.onResubmitted();
      return count;
    },
    reconnect(name) {
      void deps.hopNamed(name).then((hop) => {
        if (!hop) return;
        hop.generation++;
        pool.closeIdle(hop);
      });
    },
  };
}
