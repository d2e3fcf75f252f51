// Time limits of queued recipients (DL-5, DL-6): at maxQueueLifetime a recipient
// that is still waiting (in a delivery queue in Retry, deferred, or in
// Unreachable) fails with 4.4.7 and its sender gets a report; after
// delayNotification the sender gets one delay notice, marked sent in the same
// transaction that enqueues it. One alarm, set to the earliest deadline the
// store knows; a run that fails is tried again a little later, never at once.
import { createAlarm, type Clock } from '../clock.js';
import type { Notifier } from '../dsn/notifier.js';
import type { Logger } from '../observability/logger.js';
import type { DeliveryItem, QueueStore } from '../store/types.js';
import { EXPIRED_REPLY, expireItem, releaseItems, type OutcomeDeps } from './outcomes.js';

const BATCH = 100;
const AFTER_FAILURE_MS = 60_000;

export interface Deadlines {
  start(): Promise<void>;
  /** New items may have earlier deadlines: look again. */
  refresh(): void;
  stop(): void;
}

export function createDeadlines(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  notifier: Notifier;
  outcomes: OutcomeDeps;
  /** The last connection error of a queue, for items that never got as far as an attempt. */
  queueError: (queue: string) => string | undefined;
}): Deadlines {
  const { store, clock, notifier } = deps;
  const logger = deps.logger.child({ module: 'deadlines' });
  let stopped = false;
  /** After a failed run, nothing (not even a refresh) brings the next one closer than this. */
  let notBefore = 0;
  let running = Promise.resolve();
  const alarm = createAlarm(clock, () => {
    running = running.then(run);
  });

  async function delayNotice(item: DeliveryItem): Promise<void> {
    const sent = await notifier.report({
      message: item.message,
      action: 'delayed',
      clearsDelayNoticeOf: item.itemId,
      recipients: item.recipients.map((r) => ({
        position: r.position,
        reply: r.lastReply ?? item.lastError ?? deps.queueError(item.queue) ?? EXPIRED_REPLY,
        ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
        ...(r.lastAttemptAt ? { lastAttemptDate: r.lastAttemptAt } : {}),
        ...(item.expiresAt ? { willRetryUntil: item.expiresAt } : {}),
      })),
    });
    if (!sent) await store.clearDelayNotices([item.itemId]);
  }

  async function run(): Promise<void> {
    if (stopped) return;
    const now = clock.now();
    try {
      for (let items = await store.claimExpired(now, BATCH); items.length > 0 && !stopped; items = await store.claimExpired(now, BATCH)) {
        deps.outcomes.claims.hold(items);
        for (const [index, item] of items.entries()) {
          try {
            await expireItem(deps.outcomes, item, deps.queueError(item.queue));
          } catch (error) {
            // the rest of the batch goes back untouched; the alarm comes again later
            await releaseItems(deps.outcomes, items.slice(index + 1)).catch(() => undefined);
            throw error;
          }
        }
      }
      let after = 0;
      for (let items = await store.dueDelayNotices(now, BATCH, after); items.length > 0 && !stopped; items = await store.dueDelayNotices(now, BATCH, after)) {
        for (const item of items) await delayNotice(item);
        after = items[items.length - 1]!.itemId;
      }
      await look();
    } catch (error) {
      logger.error({ err: error }, 'deadline run failed');
      notBefore = now + AFTER_FAILURE_MS;
      if (!stopped) alarm.at(notBefore);
    }
  }

  async function look(): Promise<void> {
    const next = await store.nextDeadline();
    if (next !== null && !stopped) alarm.at(Math.max(next, notBefore));
  }

  return {
    start: look,
    refresh() {
      void look().catch((error: unknown) => logger.error({ err: error }, 'deadline lookup failed'));
    },
    stop() {
      stopped = true;
      alarm.cancel();
    },
  };
}
