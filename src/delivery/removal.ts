// Removing a routed item at an operator's request (MG-3): the recipients it
// still carries fail with "removed by the administrator", the sender gets an
// NDR when the operator asked for one, and the item leaves the store like any
// final attempt. Used for removals at once and for PendingRemove after an
// attempt.
import type { Clock } from '../clock.js';
import type { Notifier } from '../dsn/notifier.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { DeliveryItem, QueueStore, RecipientOutcome } from '../store/types.js';

export const REMOVED_REPLY = '550 5.0.0 Message removed by the administrator';

export interface RemovalDeps {
  store: QueueStore;
  notifier: Notifier;
  events: MessageEvents;
  clock: Clock;
}

export async function removeItem(deps: RemovalDeps, item: DeliveryItem, ndr: boolean): Promise<void> {
  const now = deps.clock.now();
  const outcomes: RecipientOutcome[] = item.recipients.map((r) => ({ position: r.position, result: 'failed', reply: REMOVED_REPLY }));
  // reported before the message can leave the store with its last recipient
  if (ndr && outcomes.length > 0) {
    await deps.notifier.report({ message: item.message, action: 'failed', recipients: outcomes.map((o) => ({ ...o, lastAttemptDate: now })) });
  }
  await deps.store.recordDelivery(item.itemId, outcomes, now, now);
  deps.events.record({ event: 'removed', ...aboutMessage(item.message), recipients: item.recipients.map((r) => r.address), queue: item.queue, ndr });
}
