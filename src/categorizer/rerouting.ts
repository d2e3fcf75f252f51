// What a routing change does to mail already in the queues (RT-3, QU-7), after
// Exchange's rerouting table: a queue whose route was removed, disabled or
// changed kind (MX ↔ smart hosts) goes back to the categorizer; a changed
// smart-host list, port, TLS, protocol or connection limit is used from the
// next connection, without rerouting; a changed address space (match) or size
// limit leaves mail already routed on its path, and only new mail follows it.
// Unreachable is resubmitted when the routing table changed, and only then.
import type { RouteConfig } from '../config/schema.js';
import { UNREACHABLE_QUEUE, type QueueRecord } from '../store/types.js';

export type QueueChange =
  | { queue: string; action: 'resubmit'; reason: string }
  | { queue: string; action: 'next-connection'; reason: string }
  | { queue: string; action: 'new-mail-only'; reason: string };

const kind = (route: RouteConfig) => (route.mx ? 'MX' : 'smart hosts');

/** What decides where a recipient goes: the order, address spaces, kinds and states of the routes. */
function routingTableKey(routes: RouteConfig[]): string {
  return JSON.stringify(routes.map((r) => [r.name, r.match, r.enabled, kind(r), r.maxMessageSize ?? null]));
}

function routingTableChanged(before: RouteConfig[], after: RouteConfig[]): boolean {
  return routingTableKey(before) !== routingTableKey(after);
}

const CONNECTION_SETTINGS = ['smartHosts', 'port', 'tls', 'protocol', 'maxConnections'] as const;

function changeOf(queue: string, before: RouteConfig | undefined, after: RouteConfig | undefined): QueueChange | undefined {
  if (!before) return undefined;
  if (!after) return { queue, action: 'resubmit', reason: `route ${before.name} was removed` };
  if (before.enabled && !after.enabled) return { queue, action: 'resubmit', reason: `route ${after.name} was disabled` };
  if (kind(before) !== kind(after)) return { queue, action: 'resubmit', reason: `route ${after.name} changed from ${kind(before)} to ${kind(after)}` };
  const changed = CONNECTION_SETTINGS.filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]));
  if (changed.length > 0) return { queue, action: 'next-connection', reason: `${changed.join(', ')} of route ${after.name} changed` };
  if (JSON.stringify([before.match, before.maxMessageSize]) !== JSON.stringify([after.match, after.maxMessageSize])) {
    return { queue, action: 'new-mail-only', reason: `the address space or size limit of route ${after.name} changed` };
  }
  return undefined;
}

/** The change for each queue that a new routing table affects, in queue order. */
export function planRerouting(queues: QueueRecord[], before: RouteConfig[], after: RouteConfig[]): QueueChange[] {
  const tableChanged = routingTableChanged(before, after);
  return queues.flatMap((record): QueueChange[] => {
    if (record.name === UNREACHABLE_QUEUE) {
      return tableChanged && record.messageCount > 0 ? [{ queue: record.name, action: 'resubmit', reason: 'the routing table changed' }] : [];
    }
    if (record.route === null) return [];
    const change = changeOf(record.name, before.find((r) => r.name === record.route), after.find((r) => r.name === record.route));
    return change ? [change] : [];
  });
}
