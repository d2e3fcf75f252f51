// Queue properties as an operator sees them (QU-1, QU-2): the store's queues
// and counts joined with the delivery engine's live state. Written once here
// for the CLI, the HTTP API and the web viewer.
import type { DeliveryManager, QueueStatus } from '../delivery/queue-manager.js';
import type { QueueStore } from '../store/types.js';
import type { PropertyMap } from './filter.js';

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

/** The filterable queue properties (MG-1), by lower-case name. */
export const QUEUE_PROPERTIES: PropertyMap = {
  identity: { column: 'Identity', type: 'text' },
  deliverytype: { column: 'DeliveryType', type: 'text' },
  nexthopdomain: { column: 'NextHopDomain', type: 'text' },
  nexthopconnector: { column: 'NextHopConnector', type: 'text' },
  status: { column: 'Status', type: 'text' },
  messagecount: { column: 'MessageCount', type: 'number' },
  lasterror: { column: 'LastError', type: 'text' },
  lastretrytime: { column: 'LastRetryTime', type: 'date' },
  nextretrytime: { column: 'NextRetryTime', type: 'date' },
};

const isoOrNull = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export async function listQueues(deps: { node: string; store: QueueStore; delivery: DeliveryManager }): Promise<QueueView[]> {
  const live = new Map(deps.delivery.queues().map((q) => [q.name, q]));
  return (await deps.store.listQueues()).map((record) => {
    const state = live.get(record.name);
    return {
      Identity: `${deps.node}/${record.name}`,
      DeliveryType: record.deliveryType,
      NextHopDomain: record.name,
      NextHopConnector: record.route,
      Status: state?.status ?? 'Ready',
      MessageCount: record.messageCount,
      LastError: state?.lastError ?? null,
      LastRetryTime: isoOrNull(state?.lastRetryTime),
      NextRetryTime: isoOrNull(state?.nextRetryTime),
    };
  });
}
