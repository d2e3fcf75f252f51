// The categorizer (RT-1, RT-2, QU-4): takes messages from Submission, oldest
// first, and splits each into routed items, one per next hop, that share the
// stored body. It reports which delivery queues got new work.
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { QueueRef, QueueStore, RecipientFailure, RoutedItemInput, RoutingDecision, StoredMessage } from '../store/types.js';
import type { BounceProfile } from '../config/schema.js';
import type { Clock } from '../clock.js';
import type { Notifier } from '../dsn/notifier.js';
import { UNREACHABLE_QUEUE } from '../store/types.js';
import type { RoutingTable } from './routing-table.js';

const BATCH = 100;

export interface Categorizer {
  /** Something arrived in Submission; runs at once or right after the current run. */
  wake(): void;
  /** Resolves when no run is in progress. */
  idle(): Promise<void>;
  /** Finishes the batch in hand and takes no more. */
  stop(): Promise<void>;
}

export function createCategorizer(deps: {
  store: QueueStore;
  clock: Clock;
  routing: () => RoutingTable;
  /** The bounce profile of a route (the default one for Unreachable). */
  profile: (route: string | null) => BounceProfile;
  notifier: Notifier;
  logger: Logger;
  events: MessageEvents;
  onRouted: (queues: QueueRef[]) => void;
}): Categorizer {
  const logger = deps.logger.child({ module: 'categorizer' });
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function run(): Promise<void> {
    while (!stopped) {
      const claimed = await deps.store.claimSubmission(BATCH, deps.clock.now());
      if (claimed.length === 0) return;
      const messages = claimed.map((c) => c.message);
      let decisions: RoutingDecision[];
      try {
        const table = deps.routing();
        decisions = claimed.map(({ message, positions, claim }) => decide(table, message, positions, claim));
        for (const [index, decision] of decisions.entries()) {
          // reported before the message may leave the store with its last recipient
          if (decision.failures.length > 0) {
            await deps.notifier.report({ message: messages[index]!, action: 'failed', recipients: decision.failures });
          }
        }
        await deps.store.routeMessages(decisions);
      } catch (error) {
        // nothing claimed stays behind: the batch goes back to Submission as it was (a fenced release changes nothing if it was routed)
        await deps.store.releaseSubmission(claimed.map((c) => ({ messageId: c.message.id, claim: c.claim }))).catch(() => undefined);
        throw error;
      }
      const touched = new Map<string, QueueRef>();
      for (const [index, decision] of decisions.entries()) {
        for (const item of decision.items) if (item.route) touched.set(item.queue, { name: item.queue, route: item.route });
        const message = messages[index]!;
        deps.events.record({
          event: 'routed',
          ...aboutMessage(message),
          recipients: claimed[index]!.positions.map((p) => message.recipients[p]!.address),
          queues: decision.items.map((i) => i.queue),
          failed: decision.failures.length,
          unreachable: decision.items.find((i) => i.deliveryType === 'Unreachable')?.lastError,
        });
      }
      deps.onRouted([...touched.values()]);
    }
  }

  /** Routes the recipients at `positions` (those not yet routed: all of them, or the ones sent back by a resubmit). */
  function decide(table: RoutingTable, message: StoredMessage, positions: number[], claim: number): RoutingDecision {
    const items = new Map<string, RoutedItemInput>();
    const failures: RecipientFailure[] = [];
    positions.forEach((position) => {
      const decision = table.decide(message.recipients[position]!.address, message.size);
      if (decision.kind === 'fail') {
        failures.push({ position, reply: decision.reply });
        return;
      }
      const route = decision.kind === 'queue' ? decision.route : null;
      const profile = deps.profile(route);
      const deadlines = {
        expiresAt: message.receivedAt + profile.maxQueueLifetime,
        delayAt: message.mailFrom === '' ? null : message.receivedAt + profile.delayNotification,
      };
      const item: RoutedItemInput =
        decision.kind === 'queue'
          ? { queue: decision.queue, deliveryType: decision.deliveryType, route, recipients: [], ...deadlines }
          : { queue: UNREACHABLE_QUEUE, deliveryType: 'Unreachable', route: null, recipients: [], lastError: decision.reason, ...deadlines };
      const existing = items.get(item.queue) ?? items.set(item.queue, item).get(item.queue)!;
      existing.recipients.push(position);
    });
    return { messageId: message.id, claim, items: [...items.values()], failures };
  }

  function start(): void {
    running = run()
      .catch((error: unknown) => logger.error({ err: error }, 'categorizer run failed; retried at the next wake'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          start();
        }
      });
  }

  return {
    wake() {
      if (stopped) return;
      if (running) again = true;
      else start();
    },
    async idle() {
      while (running) await running;
    },
    async stop() {
      stopped = true;
      while (running) await running;
    },
  };
}
