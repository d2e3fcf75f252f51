// Queues as an operator sees and steers them (QU-1, QU-2, MG-2): the store's
// queues and counts joined with the delivery engine's live state, and the
// queue actions. Written once here for the CLI and the HTTP API.
import type { Clock } from '../clock.js';
import type { DeliveryManager } from '../delivery/engine.js';
import type { QueueStatus } from '../delivery/queue-state.js';
import { POISON_QUEUE, SUBMISSION_QUEUE, UNREACHABLE_QUEUE, type QueueStore } from '../store/types.js';
import { ManagementError, checkSelector, notFound, type Selector } from './errors.js';
import { matchesFilter, parseFilter, resolveFilter, type PropertyMap } from './filter.js';

export interface QueueView {
  Identity: string;
  DeliveryType: string;
  NextHopDomain: string;
  NextHopConnector: string | null;
  Status: QueueStatus;
  MessageCount: number;
  LastError: string | null;
  LastRetryTime: string | null;
  NextRetryTime: string | null;
}

/** Every QU-2 queue status, as filters name them. */
export const QUEUE_STATUSES: readonly QueueStatus[] = ['Active', 'Ready', 'Retry', 'Suspended'];

/** The filterable queue properties (MG-1), by lower-case name. */
export const QUEUE_PROPERTIES: PropertyMap = {
  identity: { column: 'Identity', type: 'text' },
  deliverytype: { column: 'DeliveryType', type: 'text' },
  nexthopdomain: { column: 'NextHopDomain', type: 'text' },
  nexthopconnector: { column: 'NextHopConnector', type: 'text' },
  status: { column: 'Status', type: 'text', values: QUEUE_STATUSES },
  messagecount: { column: 'MessageCount', type: 'number' },
  lasterror: { column: 'LastError', type: 'text' },
  lastretrytime: { column: 'LastRetryTime', type: 'date' },
  nextretrytime: { column: 'NextRetryTime', type: 'date' },
};

export interface QueueDeps {
  node: string;
  store: QueueStore;
  delivery: DeliveryManager;
  clock: Clock;
}

/** Which queues an action is for: one by identity (`<node>/<nexthop>` or the bare next hop), or every match of a filter. */
export type QueueSelector = Selector;

export type QueueAction = 'suspend' | 'resume' | 'retry' | 'resubmit';

export interface QueueActionResult {
  Identity: string;
  Action: QueueAction;
  /** Messages made ready (retry) or sent back to the categorizer (resubmit). */
  Messages?: number;
}

const isoOrNull = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export async function listQueues(deps: QueueDeps, filter?: string): Promise<QueueView[]> {
  const conditions = filter ? resolveFilter(parseFilter(filter), QUEUE_PROPERTIES, deps.clock.now()) : [];
  const live = new Map(deps.delivery.queues().map((q) => [q.name, q]));
  const views = (await deps.store.listQueues()).map((record): QueueView => {
    const state = live.get(record.name);
    return {
      Identity: `${deps.node}/${record.name}`,
      DeliveryType: record.deliveryType,
      NextHopDomain: record.name,
      NextHopConnector: record.route,
      Status: record.suspended ? 'Suspended' : (state?.status ?? 'Ready'),
      MessageCount: record.messageCount,
      LastError: state?.lastError ?? null,
      LastRetryTime: isoOrNull(state?.lastRetryTime),
      NextRetryTime: isoOrNull(state?.nextRetryTime),
    };
  });
  // QU-6: the Poison queue is shown only while it holds messages, as Exchange does
  const shown = views.filter((view) => view.NextHopDomain !== POISON_QUEUE || view.MessageCount > 0);
  return shown.filter((view) => matchesFilter(conditions, view as unknown as Record<string, unknown>));
}

/** A queue an action can apply to: delivery queues take every action; Unreachable only a resubmit; Submission and Poison none (QU-6: its messages are resumed one by one). */
function accepts(view: QueueView, action: QueueAction): boolean {
  if (view.NextHopDomain === SUBMISSION_QUEUE || view.NextHopDomain === POISON_QUEUE) return false;
  if (view.NextHopDomain === UNREACHABLE_QUEUE) return action === 'resubmit';
  return true;
}

/** With `dryRun`, nothing is done: the answer names the queues the action would apply to (without Messages). */
export async function actOnQueues(deps: QueueDeps, selector: QueueSelector, action: QueueAction, dryRun = false): Promise<QueueActionResult[]> {
  checkSelector(selector);
  let targets: QueueView[];
  if (selector.identity !== undefined) {
    // on a shared store the node part names the node that listed it: every node of the cluster takes it
    const slash = selector.identity.indexOf('/');
    const ours = slash > 0 && (deps.store.shared || selector.identity.slice(0, slash) === deps.node);
    const name = ours ? selector.identity.slice(slash + 1) : selector.identity;
    const view = (await listQueues(deps)).find((q) => q.NextHopDomain.toLowerCase() === name.toLowerCase());
    if (!view) throw notFound(`no queue ${selector.identity}`);
    if (!accepts(view, action)) throw new ManagementError(409, 'Conflict', `the ${view.NextHopDomain} queue does not take ${action}`);
    targets = [view];
  } else {
    targets = (await listQueues(deps, selector.filter)).filter((view) => accepts(view, action));
  }
  if (dryRun) return targets.map((view) => ({ Identity: view.Identity, Action: action }));
  const results: QueueActionResult[] = [];
  for (const view of targets) {
    const name = view.NextHopDomain;
    switch (action) {
      case 'suspend':
      case 'resume':
        await deps.delivery[action](name);
        results.push({ Identity: view.Identity, Action: action });
        break;
      case 'retry':
        results.push({ Identity: view.Identity, Action: action, Messages: await deps.delivery.retryNow(name) });
        break;
      case 'resubmit':
        results.push({ Identity: view.Identity, Action: action, Messages: await deps.delivery.resubmit(name) });
        break;
    }
  }
  return results;
}
