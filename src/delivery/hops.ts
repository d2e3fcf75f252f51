// The delivery queues this process knows (QU-1): one hop per next hop,
// created when it is first needed, with its ready queue claiming from the
// store, and forgotten a while after its last message left.
import type { Clock, TimerHandle } from '../clock.js';
import type { Config, RouteConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { QueueStore } from '../store/types.js';
import type { ClaimKeeper } from './claims.js';
import type { Hop } from './connection-pool.js';
import { createReadyQueue } from './ready-queue.js';

/** QU-1: a delivery queue is forgotten this long after its last message left. */
const EMPTY_QUEUE_LIFETIME_MS = 3 * 60_000;

export interface Hops {
  get(name: string): Hop | undefined;
  all(): Hop[];
  /** The hop of a queue fed by this route, created when first needed. */
  forQueue(name: string, route: RouteConfig): Hop;
  /** The queue in memory, else the store's (one not seen since the start), with its kept state. */
  named(name: string): Promise<Hop | undefined>;
  /** A connection found the queue empty: forget it if it still is in a while (the store checks). */
  emptied(hop: Hop, onForgotten: (hop: Hop) => void): void;
  stop(): void;
}

/** The last error seen since the start, else the one the store kept with the Retry state. */
export const lastErrorOf = (hop: Hop | undefined): string | undefined => hop?.lastError ?? hop?.state.retry?.lastError;

export function createHops(deps: { store: QueueStore; clock: Clock; logger: Logger; claims: ClaimKeeper; config: () => Config }): Hops {
  const { store, clock, claims } = deps;
  const hops = new Map<string, Hop>();
  const removals = new Map<string, TimerHandle>();
  const routeNamed = (name: string): RouteConfig | undefined => deps.config().routes.find((r) => r.name === name);

  async function claim(hop: Hop, limit: number) {
    try {
      const items = await store.claimDeliveries(hop.name, limit, clock.now());
      claims.hold(items);
      return items;
    } finally {
      // a claim was made (perhaps not ours): the reaper looks at the leases again
      claims.watch();
    }
  }

  function forQueue(name: string, route: RouteConfig): Hop {
    const known = hops.get(name);
    if (known) {
      known.route = route.name;
      return known;
    }
    const connections = () => routeNamed(hop.route)?.maxConnections ?? 1;
    const hop: Hop = {
      name,
      route: route.name,
      deliveryType: route.mx ? 'DnsConnectorDelivery' : 'SmartHostConnectorDelivery',
      state: { suspended: false, retry: null },
      // a few items per connection: enough to keep them busy, few enough that operator actions rarely wait
      ready: createReadyQueue((limit) => claim(hop, limit), () => Math.min(100, 4 * connections())),
      connections: 0,
      starting: 0,
      idle: [],
      generation: 0,
      answered: 0,
    };
    hops.set(name, hop);
    return hop;
  }

  return {
    get: (name) => hops.get(name),
    all: () => [...hops.values()],
    forQueue,
    async named(name) {
      const known = hops.get(name);
      if (known) return known;
      const record = (await store.listQueues()).find((q) => q.name === name);
      const route = record?.route ? routeNamed(record.route) : undefined;
      if (!record || !route) return undefined;
      const hop = forQueue(name, route);
      hop.state = { suspended: record.suspended, retry: record.retry };
      return hop;
    },
    emptied(hop, onForgotten) {
      removals.get(hop.name)?.cancel();
      const timer = clock.setTimer(EMPTY_QUEUE_LIFETIME_MS, () => {
        removals.delete(hop.name);
        if (hops.get(hop.name) !== hop) return;
        store.dropQueueIfEmpty(hop.name).then(
          (dropped) => {
            if (!dropped || hops.get(hop.name) !== hop) return;
            hops.delete(hop.name);
            onForgotten(hop);
          },
          (error: unknown) => deps.logger.error({ err: error, queue: hop.name }, 'removing an empty queue failed'),
        );
      });
      removals.set(hop.name, timer);
    },
    stop() {
      for (const timer of removals.values()) timer.cancel();
      removals.clear();
    },
  };
}
