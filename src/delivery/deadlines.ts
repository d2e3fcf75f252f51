// Time limits of queued recipients (DL-5, DL-6): at maxQueueLifetime a recipient
// that is still waiting (in a delivery queue in Retry, deferred, or in
// Unreachable) fails with 4.4.7 and its sender gets a report; after
// delayNotification the sender gets one delay notice. One alarm, set to the
// earliest deadline the store knows.
import { createAlarm, type Clock } from '../clock.js';
import type { Notifier } from '../dsn/notifier.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { DeliveryItem, QueueStore, RecipientOutcome } from '../store/types.js';

const BATCH = 100;

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
  events: MessageEvents;
  /** The last connection error of a queue, for items that never got as far as an attempt. */
  queueError: (queue: string) => string | undefined;
}): Deadlines {
  const { store, clock, notifier } = deps;
  const logger = deps.logger.child({ module: 'deadlines' });
  let stopped = false;
  let running = Promise.resolve();
  const alarm = createAlarm(clock, () => {
    running = running.then(run);
  });

  const lastErrorOf = (item: DeliveryItem, reply: string | undefined) =>
    reply ?? item.lastError ?? deps.queueError(item.queue) ?? '451 4.4.7 No delivery attempt succeeded within the queue lifetime';

  async function expire(item: DeliveryItem, now: number): Promise<void> {
    const outcomes: RecipientOutcome[] = item.recipients.map((r) => ({
      position: r.position,
      result: 'failed',
      reply: lastErrorOf(item, r.lastReply),
      ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
    }));
    await notifier.report({
      message: item.message,
      action: 'failed',
      recipients: outcomes.map((o, i) => ({ ...o, status: '4.4.7', ...(item.recipients[i]!.lastAttemptAt ? { lastAttemptDate: item.recipients[i]!.lastAttemptAt } : {}) })),
    });
    await store.recordDelivery(item.itemId, outcomes, now, now);
    deps.events.record({ event: 'failed', ...aboutMessage(item.message), recipients: item.recipients.map((r) => r.address), queue: item.queue, reply: outcomes[0]?.reply, expired: true });
  }

  async function delayNotice(item: DeliveryItem): Promise<void> {
    await notifier.report({
      message: item.message,
      action: 'delayed',
      recipients: item.recipients.map((r) => ({
        position: r.position,
        reply: lastErrorOf(item, r.lastReply),
        ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
        ...(r.lastAttemptAt ? { lastAttemptDate: r.lastAttemptAt } : {}),
        ...(item.expiresAt ? { willRetryUntil: item.expiresAt } : {}),
      })),
    });
  }

  async function run(): Promise<void> {
    if (stopped) return;
    try {
      const now = clock.now();
      for (let items = await store.claimExpired(now, BATCH); items.length > 0 && !stopped; items = await store.claimExpired(now, BATCH)) {
        for (const item of items) await expire(item, now);
      }
      for (let items = await store.takeDelayNotices(now, BATCH); items.length > 0 && !stopped; items = await store.takeDelayNotices(now, BATCH)) {
        for (const item of items) await delayNotice(item);
      }
      await look();
    } catch (error) {
      logger.error({ err: error }, 'deadline run failed');
    }
  }

  async function look(): Promise<void> {
    const next = await store.nextDeadline();
    if (next !== null && !stopped) alarm.at(next);
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
