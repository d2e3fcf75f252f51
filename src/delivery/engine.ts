// The delivery engine (QU-1, QU-2, QU-5, DL-1..DL-9, ST-5): one delivery
// queue per next hop, its state kept in the store, its ready items in a ready
// queue, its connections in the pool. A next hop that cannot be reached puts
// only its own queue in Retry (DL-3); deferred items come back when the
// scheduler finds them due (DL-4). Only queue state lives in memory, never
// the messages (ST-4), and every claim in hand is a lease (claims.ts).
import type { Clock, TimerHandle } from '../clock.js';
import type { Config, RouteConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { QueueRef, QueueRetry, QueueStore } from '../store/types.js';
import type { ClaimKeeper } from './claims.js';
import { createConnectionPool, type Hop } from './connection-pool.js';
import type { MxResolver } from './mx.js';
import { releaseItems, type OutcomeDeps } from './outcomes.js';
import { createQueueActions, type QueueActions } from './queue-actions.js';
import { afterConnectFailure, statusOf, type QueueStatus } from './queue-state.js';
import { createReadyQueue } from './ready-queue.js';
import { createScheduler } from './scheduler.js';

/** QU-1: a delivery queue is forgotten this long after its last message left. */
const EMPTY_QUEUE_LIFETIME_MS = 3 * 60_000;
/** A stop lets attempts in flight finish for this long (as the listeners let sessions finish), then hands their items back. */
const STOP_GRACE_MS = 5_000;

export interface QueueView {
  name: string;
  route: string;
  deliveryType: Hop['deliveryType'];
  status: QueueStatus;
  connections: number;
  /** Of those, how many wait for work. */
  idleConnections: number;
  consecutiveFailures: number;
  lastError?: string;
  lastRetryTime?: number;
  nextRetryTime?: number;
}

export interface DeliveryManager extends QueueActions {
  start(): Promise<void>;
  /** These queues got new ready items. */
  notify(queues: QueueRef[]): void;
  /** The last error of a queue's next hop, if it has one. */
  lastError(queue: string): string | undefined;
  queues(): QueueView[];
  /** Stops opening connections; connections finish their current item, and every claim in hand is handed back. */
  stop(): Promise<void>;
}

export function createDeliveryManager(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  config: () => Config;
  resolver: MxResolver;
  outcomes: OutcomeDeps;
  claims: ClaimKeeper;
  /** Messages went back to Submission. */
  onResubmitted: () => void;
}): DeliveryManager {
  const { store, clock, claims } = deps;
  const logger = deps.logger.child({ module: 'delivery' });
  const hops = new Map<string, Hop>();
  const removals = new Map<string, TimerHandle>();
  let stopping = false;
  const routeNamed = (name: string): RouteConfig | undefined => deps.config().routes.find((r) => r.name === name);
  const scheduler = createScheduler({ store, clock, logger, onDue: (queues) => notify(queues) });

  const pool = createConnectionPool({
    store,
    clock,
    logger,
    config: deps.config,
    resolver: deps.resolver,
    outcomes: deps.outcomes,
    stopping: () => stopping,
    connectFailed,
    connected(hop) {
      hop.lastError = undefined;
      if (hop.state.retry) setRetry(hop, null);
    },
    deferredUntil: (at) => scheduler.dueAt(at),
    emptied: (hop) => scheduleRemoval(hop),
    ended(hop) {
      // nothing stays claimed without a connection to take it
      void releaseItems(deps.outcomes, hop.ready.drain()).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'handing back ready items failed'));
    },
  });

  function hopFor(name: string, route: RouteConfig): Hop {
    let hop = hops.get(name);
    if (!hop) {
      const connections = () => routeNamed(created.route)?.maxConnections ?? 1;
      // a few items per connection: enough to keep them busy, few enough that operator actions rarely wait
      const ready = createReadyQueue((limit) => claim(created, limit), () => Math.min(100, 4 * connections()));
      const created: Hop = {
        name,
        route: route.name,
        deliveryType: route.mx ? 'DnsConnectorDelivery' : 'SmartHostConnectorDelivery',
        state: { suspended: false, retry: null },
        ready,
        connections: 0,
        starting: 0,
        idle: [],
        generation: 0,
        answered: 0,
      };
      hops.set(name, created);
      hop = created;
    }
    hop.route = route.name;
    return hop;
  }

  /** The last error seen since the start, else the one the store kept with the Retry state. */
  const lastErrorOf = (hop: Hop | undefined) => hop?.lastError ?? hop?.state.retry?.lastError;

  async function claim(hop: Hop, limit: number) {
    try {
      const items = await store.claimDeliveries(hop.name, limit, clock.now());
      claims.hold(items);
      return items;
    } finally {
      claims.watch();
    }
  }

  function notify(refs: QueueRef[]): void {
    for (const ref of refs) {
      const route = routeNamed(ref.route);
      if (route) pool.kick(hopFor(ref.name, route));
    }
  }

  /** DL-3, DL-7: what a failed connection attempt does to the queue. */
  function connectFailed(hop: Hop, reply: string, answeredMeanwhile: boolean): void {
    hop.lastError = reply;
    const next = afterConnectFailure(hop.state, { reply, now: clock.now(), deliveredMeanwhile: answeredMeanwhile }, deps.config().retry);
    if (next.kind === 'busy') {
      hop.ceiling = Math.max(1, hop.connections - 1);
      return;
    }
    if (next.kind === 'resubmit') {
      actions.resubmit(hop.name).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'resubmit failed'));
      return;
    }
    setRetry(hop, next.retry);
    logger.warn({ queue: hop.name, error: reply, failures: next.retry.failures, nextRetryTime: new Date(next.retry.at).toISOString() }, 'queue in retry');
    // the store hands out nothing now; what is buffered goes back, first in line
    void releaseItems(deps.outcomes, hop.ready.drain()).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'handing back ready items failed'));
  }

  /** Keeps a queue's Retry state in memory and in the store (ST-5), and wakes the queue when it ends. */
  function setRetry(hop: Hop, retry: QueueRetry | null): void {
    hop.state = { ...hop.state, retry };
    if (retry) scheduler.retryAt(hop.name, retry.at, () => pool.kick(hop));
    else scheduler.cancelRetry(hop.name);
    store.setQueueRetry(hop.name, retry).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'storing the Retry state failed'));
  }

  /** QU-1: the queue is forgotten if it is still empty then (the store checks). */
  function scheduleRemoval(hop: Hop): void {
    removals.get(hop.name)?.cancel();
    removals.set(hop.name, clock.setTimer(EMPTY_QUEUE_LIFETIME_MS, () => {
      removals.delete(hop.name);
      if (hops.get(hop.name) !== hop) return;
      store.dropQueueIfEmpty(hop.name).then(
        (dropped) => {
          if (!dropped || hops.get(hop.name) !== hop) return;
          hops.delete(hop.name);
          pool.closeIdle(hop);
        },
        (error: unknown) => logger.error({ err: error, queue: hop.name }, 'removing an empty queue failed'),
      );
    }));
  }

  const actions = createQueueActions({
    store,
    clock,
    logger,
    pool,
    outcomes: deps.outcomes,
    onResubmitted: deps.onResubmitted,
    setRetry,
    /** The queue in memory, else the store's (one not seen since the start). */
    async hopNamed(name) {
      const known = hops.get(name);
      if (known) return known;
      const record = (await store.listQueues()).find((q) => q.name === name);
      const route = record?.route ? routeNamed(record.route) : undefined;
      if (!record || !route) return undefined;
      const hop = hopFor(name, route);
      hop.state = { suspended: record.suspended, retry: record.retry };
      return hop;
    },
  });

  return {
    ...actions,
    async start() {
      for (const record of await store.listQueues()) {
        const route = record.route === null ? undefined : routeNamed(record.route);
        if (!route) continue;
        const hop = hopFor(record.name, route);
        hop.state = { suspended: record.suspended, retry: record.retry };
        if (record.retry) setRetry(hop, record.retry);
        if (record.messageCount > 0) pool.kick(hop);
      }
      await scheduler.start();
      claims.watch();
    },
    notify,
    lastError: (name) => lastErrorOf(hops.get(name)),
    queues: () =>
      [...hops.values()].map((hop) => ({
        name: hop.name,
        route: hop.route,
        deliveryType: hop.deliveryType,
        status: statusOf(hop.state, hop.connections, clock.now()),
        connections: hop.connections,
        idleConnections: hop.idle.length,
        consecutiveFailures: hop.state.retry?.failures ?? 0,
        ...(lastErrorOf(hop) ? { lastError: lastErrorOf(hop) } : {}),
        ...(hop.state.retry ? { lastRetryTime: hop.state.retry.since, nextRetryTime: hop.state.retry.at } : {}),
      })),
    async stop() {
      stopping = true;
      scheduler.stop();
      for (const timer of removals.values()) timer.cancel();
      for (const hop of hops.values()) pool.closeIdle(hop);
      await pool.ended(STOP_GRACE_MS);
      // claims an attempt still held when it was cut short, and any other left in hand, go back
      for (const hop of hops.values()) await releaseItems(deps.outcomes, hop.ready.drain()).catch(() => undefined);
      claims.stop();
    },
  };
}
