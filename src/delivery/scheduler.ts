// What is due, and when (DL-3, DL-4): deferred items wait in the store's
// index until their retry time (one alarm at the earliest), and a queue in
// Retry waits for its next connection attempt (one timer per queue). Items
// that are due become ready; which connection takes them is not decided here
// (KumoMTA's scheduled queue versus ready queue).
import { createAlarm, type Clock, type TimerHandle } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { QueueRef, QueueStore } from '../store/types.js';

/** A store that failed to answer is asked again after this long, not in a tight loop. */
const AFTER_FAILURE_MS = 5_000;

export interface Scheduler {
  /** Deferred items fall due at `at`. */
  dueAt(at: number): void;
  /** Calls `then` when a queue's Retry wait ends; replaces that queue's earlier wait. */
  retryAt(queue: string, at: number, then: () => void): void;
  cancelRetry(queue: string): void;
  /** Looks up the earliest due time again (another node may have deferred items, and died). */
  refresh(): void;
  start(): Promise<void>;
  stop(): void;
}

export function createScheduler(deps: { store: QueueStore; clock: Clock; logger: Logger; onDue: (queues: QueueRef[]) => void }): Scheduler {
  const { store, clock } = deps;
  const logger = deps.logger.child({ module: 'scheduler' });
  const retries = new Map<string, TimerHandle>();
  let stopped = false;
  const due = createAlarm(clock, () => void promoteDue());

  async function promoteDue(): Promise<void> {
    try {
      deps.onDue(await store.promoteDue(clock.now()));
      const next = await store.nextDueTime();
      if (next !== null) due.at(next);
    } catch (error) {
      logger.error({ err: error }, 'promoting due items failed');
      due.at(clock.now() + AFTER_FAILURE_MS);
    }
  }

  return {
    dueAt: (at) => due.at(at),
    retryAt(queue, at, then) {
      retries.get(queue)?.cancel();
      retries.set(
        queue,
        clock.setTimer(Math.max(0, at - clock.now()), () => {
          retries.delete(queue);
          then();
        }),
      );
    },
    cancelRetry(queue) {
      retries.get(queue)?.cancel();
      retries.delete(queue);
    },
    refresh() {
      store.nextDueTime().then(
        (next) => {
          if (next !== null && !stopped) due.at(next);
        },
        (error: unknown) => logger.error({ err: error }, 'looking up due items failed'),
      );
    },
    async start() {
      const next = await store.nextDueTime();
      if (next !== null) due.at(next);
    },
    stop() {
      stopped = true;
      due.cancel();
      for (const timer of retries.values()) timer.cancel();
      retries.clear();
    },
  };
}
