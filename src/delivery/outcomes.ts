// What becomes of a claimed routed item (DL-2, DL-5, DS-1, MG-3): an attempt's
// per-recipient outcomes, an expiry, an operator's removal, or a hand-back
// when no attempt happened. Reports are submitted before the outcome is
// recorded, so a message never leaves the store before its report is durable.
// Every write is fenced on the item's lease (ST-5). Whatever happens, the
// claim leaves the keeper: on an error the item is handed back first, and
// should even that fail, its lease is no longer renewed, so it expires and the
// reaper takes the item back.
import type { Clock } from '../clock.js';
import type { BounceProfile, RouteConfig } from '../config/schema.js';
import type { Notifier } from '../dsn/notifier.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { DeliveryItem, QueueStore, RecipientOutcome } from '../store/types.js';
import type { ClaimKeeper } from './claims.js';
import { messageRetryDelay } from './retry-policy.js';

export const REMOVED_REPLY = '550 5.0.0 Message removed by the administrator';
export const EXPIRED_REPLY = '451 4.4.7 No delivery attempt succeeded within the queue lifetime';

export interface OutcomeDeps {
  store: QueueStore;
  notifier: Notifier;
  events: MessageEvents;
  clock: Clock;
  claims: ClaimKeeper;
  /** Items went back unclaimed: their deadlines count again. */
  onReleased: () => void;
}

/** What an attempt left to do: deferred recipients wait until `retryAt` (unless an operator acted meanwhile). */
export interface AttemptResult {
  deferredReply?: string;
  retryAt?: number;
}

const failedAll = (item: DeliveryItem, reply: (r: DeliveryItem['recipients'][number]) => string): RecipientOutcome[] =>
  item.recipients.map((r) => ({ position: r.position, result: 'failed', reply: reply(r), ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}) }));

/** Runs the work that settles a claimed item; on a throw the item is handed back untouched. */
async function settling<T>(deps: OutcomeDeps, item: DeliveryItem, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    await releaseItems(deps, [item]).catch(() => undefined);
    throw error;
  } finally {
    deps.claims.drop(item);
  }
}

/** Records one attempt: DL-5 turns a deferral past the retry count or lifetime into a 4.4.7 failure. */
export function recordAttempt(
  deps: OutcomeDeps,
  attempt: { item: DeliveryItem; outcomes: RecipientOutcome[]; route: RouteConfig; profile: BounceProfile; nextHopReports: boolean; relay?: string },
): Promise<AttemptResult> {
  return settling(deps, attempt.item, () => record(deps, attempt));
}

async function record(
  deps: OutcomeDeps,
  attempt: { item: DeliveryItem; outcomes: RecipientOutcome[]; route: RouteConfig; profile: BounceProfile; nextHopReports: boolean; relay?: string },
): Promise<AttemptResult> {
  const { item, profile } = attempt;
  const now = deps.clock.now();
  const expired = item.attempts + 1 >= profile.maxRetries || (item.expiresAt !== null && now >= item.expiresAt);
  const final = attempt.outcomes.map((o): RecipientOutcome & { expired?: boolean } => (expired && o.result === 'deferred' ? { ...o, result: 'failed', expired: true } : o));
  const failed = final.filter((o) => o.result === 'failed');
  if (failed.length > 0) {
    const recipients = failed.map(({ expired: lapsed, ...o }) => ({ ...o, ...(lapsed ? { status: '4.4.7' } : {}), lastAttemptDate: now }));
    await deps.notifier.report({ message: item.message, action: 'failed', recipients });
  }
  const delivered = final.filter((o) => o.result === 'delivered');
  // RFC 3461 §4.1: a next hop that takes NOTIFY reports success itself
  const action = attempt.route.protocol === 'lmtp' ? 'delivered' : attempt.nextHopReports ? undefined : 'relayed';
  if (delivered.length > 0 && action) {
    await deps.notifier.report({ message: item.message, action, recipients: delivered.map((o) => ({ ...o, lastAttemptDate: now })) });
  }
  const retryAt = now + messageRetryDelay(profile, item.attempts);
  const pending = await deps.store.recordDelivery(item, final.map(({ expired: _e, ...o }) => o), retryAt, now);
  const byPosition = new Map(item.recipients.map((r) => [r.position, r]));
  const addresses = (these: RecipientOutcome[]) => these.flatMap((o) => byPosition.get(o.position)?.address ?? []);
  for (const result of ['delivered', 'deferred', 'failed'] as const) {
    // one event per outcome and reply, so each recipient's own reply is in the log and the tracking log
    const byReply = new Map<string, RecipientOutcome[]>();
    for (const o of final) if (o.result === result) byReply.set(`${o.reply}\n${o.remoteMta ?? ''}`, [...(byReply.get(`${o.reply}\n${o.remoteMta ?? ''}`) ?? []), o]);
    for (const these of byReply.values()) {
      deps.events.record({
        event: result,
        ...aboutMessage(item.message),
        recipients: addresses(these),
        queue: item.queue,
        reply: these[0]!.reply,
        ...(these[0]!.remoteMta ? { remoteMta: these[0]!.remoteMta } : {}),
        ...(attempt.relay ? { relay: attempt.relay } : {}),
        attempt: item.attempts + 1,
        receivedAt: item.message.receivedAt,
        ...(expired && result === 'failed' ? { expired: true } : {}),
      });
    }
  }
  const deferred = final.filter((o) => o.result === 'deferred');
  if (deferred.length === 0 || pending === 'lost') return {};
  const rest = { ...item, recipients: item.recipients.filter((r) => deferred.some((o) => o.position === r.position)) };
  // an operator acted while this attempt ran (PendingSuspend / PendingRemove)
  if (pending === 'suspend') deps.events.record({ event: 'suspended', ...aboutMessage(item.message), recipients: addresses(deferred), queue: item.queue });
  else if (pending) await removeItem(deps, rest, pending === 'remove-ndr');
  return { deferredReply: deferred[0]!.reply, ...(pending ? {} : { retryAt }) };
}

/** MG-3: the recipients the item still carries fail with "removed by the administrator"; an NDR if asked for. */
export function removeItem(deps: OutcomeDeps, item: DeliveryItem, ndr: boolean): Promise<void> {
  return settling(deps, item, async () => {
    const now = deps.clock.now();
    const outcomes = failedAll(item, () => REMOVED_REPLY);
    if (ndr && outcomes.length > 0) {
      await deps.notifier.report({ message: item.message, action: 'failed', recipients: outcomes.map((o) => ({ ...o, lastAttemptDate: now })) });
    }
    await deps.store.recordDelivery(item, outcomes, now, now);
    deps.events.record({ event: 'removed', ...aboutMessage(item.message), recipients: item.recipients.map((r) => r.address), queue: item.queue, ndr });
  });
}

/** DL-5: every recipient still waiting fails with 4.4.7 and the last error it had. */
export function expireItem(deps: OutcomeDeps, item: DeliveryItem, queueError: string | undefined): Promise<void> {
  return settling(deps, item, async () => {
    const now = deps.clock.now();
    const outcomes = failedAll(item, (r) => r.lastReply ?? item.lastError ?? queueError ?? EXPIRED_REPLY);
    await deps.notifier.report({
      message: item.message,
      action: 'failed',
      recipients: outcomes.map((o, i) => ({ ...o, status: '4.4.7', ...(item.recipients[i]!.lastAttemptAt ? { lastAttemptDate: item.recipients[i]!.lastAttemptAt } : {}) })),
    });
    await deps.store.recordDelivery(item, outcomes, now, now);
    deps.events.record({ event: 'failed', ...aboutMessage(item.message), recipients: item.recipients.map((r) => r.address), queue: item.queue, reply: outcomes[0]?.reply, expired: true });
  });
}

/** Hands claimed items back untouched (no attempt happened); removals an operator asked for meanwhile are carried out. */
export async function releaseItems(deps: OutcomeDeps, items: DeliveryItem[]): Promise<void> {
  if (items.length === 0) return;
  let removals: DeliveryItem[] = [];
  try {
    removals = await deps.store.releaseDeliveries(items);
  } finally {
    for (const item of items) if (!removals.some((r) => r.itemId === item.itemId)) deps.claims.drop(item);
    deps.onReleased();
  }
  for (const item of removals) await removeItem(deps, item, item.pendingAction === 'remove-ndr');
}
