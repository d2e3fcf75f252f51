// The delivery engine (QU-1, QU-2, QU-5, DL-1..DL-9, ST-5): one delivery
// queue per next hop, its state kept in the store, its ready items in a ready
// queue, its connections in the pool. A next hop that cannot be reached puts
// only its own queue in Retry (DL-3); deferred items come back when the
// scheduler finds them due (DL-4). Only queue state lives in memory, never
// the messages (ST-4), and every claim in hand is a lease (claims.ts).
import type { Clock } from '../clock.js';
import type { Config, RouteConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { QueueRef, QueueRetry, QueueStore, StoreEvent } from '../store/types.js';
import type { ClaimKeeper } from './claims.js';
import { createConnectionPool, type Hop } from './connection-pool.js';
import { createHops, lastErrorOf } from './hops.js';
import type { MxResolver } from './mx.js';
import { releaseItems, type OutcomeDeps } from './outcomes.js';
import { createQueueActions, type QueueActions } from './queue-actions.js';
import { afterConnectFailure, mayConnect, statusOf, type QueueState, type QueueStatus } from './queue-state.js';
import { createScheduler } from './scheduler.js';

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
  /**
   * What another node of a shared store did: queues it gave ready items wake here too, a queue's state it
   * changed (suspended, resumed, Retry begun or ended) applies here at once, and after a `resync` every queue's
   * state and work is looked at again.
   */
  storeEvent(event: StoreEvent): void;
  /** The periodic sweep of a shared store (claims.ts): queues that found no free connection slot try again; `full`: due items are looked up again. */
  sweep(full: boolean): void;
  /** Every queue's state and work looked at again (the store answers again after an outage). */
  resync(): Promise<void>;
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
  const hops = createHops({ store, clock, logger, claims, config: deps.config });
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
    emptied: (hop) => hops.emptied(hop, (forgotten) => pool.closeIdle(forgotten)),
    // nothing stays claimed without a connection to take it
    ended: (hop) => handBack(hop),
  });

  /** The hop's ready items go back to the store, first in line. */
  function handBack(hop: Hop): void {
    void releaseItems(deps.outcomes, hop.ready.drain()).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'handing back ready items failed'));
  }

  function notify(refs: QueueRef[]): void {
    for (const ref of refs) {
      const route = routeNamed(ref.route);
      if (route) pool.kick(hops.forQueue(ref.name, route));
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
    handBack(hop);
  }

  /** Keeps a queue's Retry state in memory and in the store (ST-5), and wakes the queue when it ends. */
  function setRetry(hop: Hop, retry: QueueRetry | null): void {
    hop.state = { ...hop.state, retry };
    if (retry) scheduler.retryAt(hop.name, retry.at, () => pool.kick(hop));
    else scheduler.cancelRetry(hop.name);
    store.setQueueRetry(hop.name, retry).catch((error: unknown) => logger.error({ err: error, queue: hop.name }, 'storing the Retry state failed'));
  }

  /** Applies a queue state another node stored: no write, the store has it already. */
  function applyState(hop: Hop, change: Partial<QueueState>): void {
    const wasOpen = mayConnect(hop.state, clock.now());
    hop.state = {
      suspended: change.suspended ?? hop.state.suspended,
      retry: change.retry === undefined ? hop.state.retry : change.retry,
    };
    if (change.retry !== undefined) {
      const retry = change.retry;
      if (retry && retry.at > clock.now()) scheduler.retryAt(hop.name, retry.at, () => pool.kick(hop));
      else scheduler.cancelRetry(hop.name);
    }
    const open = mayConnect(hop.state, clock.now());
    if (!open) {
      pool.closeIdle(hop);
      handBack(hop);
    } else if (!wasOpen) pool.kick(hop);
  }

  /** The hop of a queue another node named: the one in memory, else as the store keeps it. */
  async function hopOf(name: string): Promise<Hop | undefined> {
    return hops.get(name) ?? (await hops.named(name));
  }

  async function onStoreEvent(event: StoreEvent): Promise<void> {
    if (stopping) return;
    if (event.kind === 'ready') {
      for (const ref of event.queues) {
        const hop = await hopOf(ref.name);
        if (hop) pool.kick(hop);
      }
    } else if (event.kind === 'queue') {
      const known = hops.get(event.queue);
      const hop = known ?? (await hops.named(event.queue));
      // a hop just read from the store has the new state already
      if (hop && known) applyState(hop, { ...(event.suspended === undefined ? {} : { suspended: event.suspended }), ...(event.retry === undefined ? {} : { retry: event.retry }) });
      else if (hop && mayConnect(hop.state, clock.now())) pool.kick(hop);
    } else if (event.kind === 'resync') await resync();
  }

  async function resync(): Promise<void> {
    if (stopping) return;
    for (const record of await store.listQueues()) {
      const route = record.route === null ? undefined : routeNamed(record.route);
      if (!route) continue;
      const hop = hops.forQueue(record.name, route);
      applyState(hop, { suspended: record.suspended, retry: record.retry });
      if (record.messageCount > 0) pool.kick(hop);
    }
    scheduler.refresh();
  }

  const actions = createQueueActions({
    store,
    clock,
    logger,
    pool,
    outcomes: deps.outcomes,
    onResubmitted: deps.onResubmitted,
    setRetry,
    hopNamed: (name) => hops.named(name),
  });

  return {
    ...actions,
    async start() {
      for (const record of await store.listQueues()) {
        const route = record.route === null ? undefined : routeNamed(record.route);
        if (!route) continue;
        const hop = hops.forQueue(record.name, route);
        hop.state = { suspended: record.suspended, retry: record.retry };
        if (record.retry) setRetry(hop, record.retry);
        if (record.messageCount > 0) pool.kick(hop);
      }
      await scheduler.start();
      claims.watch();
    },
    notify,
    storeEvent(event) {
      onStoreEvent(event).catch((error: unknown) => logger.error({ err: error, event: event.kind }, 'acting on another node\'s event failed'));
    },
    sweep(full) {
      pool.retrySlots(hops.all());
      if (full) scheduler.refresh();
    },
    resync,
    lastError: (name) => lastErrorOf(hops.get(name)),
    queues: () =>
      hops.all().map((hop) => ({
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
      hops.stop();
      for (const hop of hops.all()) pool.closeIdle(hop);
      await pool.ended(STOP_GRACE_MS);
      // claims an attempt still held when it was cut short, and any other left in hand, go back
      for (const hop of hops.all()) await releaseItems(deps.outcomes, hop.ready.drain()).catch(() => undefined);
      claims.stop();
    },
  };
}
