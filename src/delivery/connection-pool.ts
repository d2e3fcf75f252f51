// The connections of each next hop (DL-1, DL-3, DL-9): up to the route's
// maxConnections, each taking the next item from its hop's ready queue when
// it is free, attempting it and recording the outcome, then waiting a moment
// for more before it closes. Every claimed item a connection takes is either
// recorded or handed back, whatever happens, exceptions included.
import type { Clock } from '../clock.js';
import type { Config, RouteConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { DeliveryItem, DeliveryType, QueueStore, RecipientOutcome } from '../store/types.js';
import { deliverItem } from './deliver-item.js';
import { DnsFailure, smartHostTargets, type MxResolver, type Target } from './mx.js';
import { recordAttempt, releaseItems, type OutcomeDeps } from './outcomes.js';
import { mayConnect, type QueueState } from './queue-state.js';
import type { ReadyQueue } from './ready-queue.js';
import { ConnectFailure, connect, type OutboundConnection } from './smtp-client.js';

/** An open connection waits this long for more work before it closes (like Postfix's connection cache). */
const IDLE_CONNECTION_MS = 2_000;

/**
 * Why a connection ended: nothing to do, the queue may not connect now, the next hop could not be reached, it
 * was cut short, or it never started because the cluster's connection slots of the queue were all taken.
 */
type Ending = 'idle' | 'held' | 'unreachable' | 'interrupted' | 'noSlot';

/** After connections that failed unexpectedly one after another (the store unreachable), the next waits this long, doubling. */
const AFTER_FAILURE_MS = 500;
const MAX_AFTER_FAILURE_MS = 30_000;

/** One next hop: its delivery queue's state and its connections. */
export interface Hop {
  readonly name: string;
  route: string;
  deliveryType: DeliveryType;
  /** As kept in the store (ST-5). */
  state: QueueState;
  lastError?: string;
  readonly ready: ReadyQueue;
  connections: number;
  /** Connections not yet past their connect: no need to open more until then. */
  starting: number;
  /** Connections waiting for work: waking one beats opening another. */
  idle: Array<(hasWork: boolean) => void>;
  /** Connections opened before the last change of the next hop's settings finish their item and close (RT-3). */
  generation: number;
  /** Transactions the next hop answered: shows whether it delivered while a connection attempt failed. */
  answered: number;
  /** After a refused connection while others deliver: open no more than this until one closes. */
  ceiling?: number;
  /** A shared store had no free connection slot for the queue (all taken by other nodes): try again at the next sweep. */
  waitingForSlot?: boolean;
  /** Connections in a row that ended with an unexpected error. */
  failures?: number;
  /** A connection is to be opened after such failures. */
  retryTimer?: { cancel(): void };
}

export interface PoolDeps {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  config: () => Config;
  resolver: MxResolver;
  outcomes: OutcomeDeps;
  stopping: () => boolean;
  /** No target of the hop answered (DL-3). */
  connectFailed(hop: Hop, reply: string, answeredMeanwhile: boolean): void;
  connected(hop: Hop): void;
  /** Deferred recipients fall due at this time. */
  deferredUntil(at: number): void;
  /** A connection found no ready item for the hop. */
  emptied(hop: Hop): void;
  /** A hop's last connection ended. */
  ended(hop: Hop): void;
}

export interface ConnectionPool {
  /** There may be work for this hop: wake an idle connection, or open one if the queue may connect. */
  kick(hop: Hop): void;
  /** Idle connections of the hop close (suspended, settings changed, stopping). */
  closeIdle(hop: Hop): void;
  /** Hops that found no free connection slot (a shared store) try again. */
  retrySlots(hops: Hop[]): void;
  /** Resolves when every connection has ended; after `graceMs` those still in an attempt are cut off and their items handed back. */
  ended(graceMs: number): Promise<void>;
}

export function createConnectionPool(deps: PoolDeps): ConnectionPool {
  const { store, clock } = deps;
  const logger = deps.logger.child({ module: 'delivery' });
  const running = new Set<Promise<void>>();
  /** Hops waiting to connect again after unexpected failures. */
  const retrying = new Set<Hop>();
  const stop = new AbortController();
  const routeOf = (hop: Hop): RouteConfig | undefined => deps.config().routes.find((r) => r.name === hop.route);

  function kick(hop: Hop): void {
    const route = routeOf(hop);
    if (deps.stopping() || !route || !mayConnect(hop.state, clock.now())) return;
    const idle = hop.idle.shift();
    if (idle) return idle(true);
    if (hop.starting > 0 || hop.connections >= Math.min(route.maxConnections, hop.ceiling ?? Infinity)) return;
    if (hop.retryTimer) return;
    hop.connections++;
    hop.starting++;
    let failed = false;
    const session = runConnection(hop, route)
      .catch((error: unknown): Ending => {
        logger.error({ err: error, queue: hop.name }, 'delivery connection failed unexpectedly');
        failed = true;
        return 'interrupted';
      })
      .then((ending) => {
        running.delete(session);
        hop.connections--;
        hop.failures = failed ? (hop.failures ?? 0) + 1 : 0;
        // a connection that was open gives its place back; a refused one leaves the ceiling as it set it
        if (ending !== 'unreachable') hop.ceiling = undefined;
        if (hop.connections === 0) deps.ended(hop);
        // the items it would have taken are still there: another connection carries on. A refused one that did
        // not put the queue in Retry (another connection was delivering) was the last: that one has ended too
        if (ending === 'interrupted' || (ending === 'unreachable' && hop.connections === 0)) {
          // errors one after another (a store that does not answer) are not retried in a tight loop
          if ((hop.failures ?? 0) > 1) retryLater(hop);
          else kick(hop);
        }
      });
    running.add(session);
  }

  function retryLater(hop: Hop): void {
    if (hop.retryTimer || deps.stopping()) return;
    const wait = Math.min(MAX_AFTER_FAILURE_MS, AFTER_FAILURE_MS * 2 ** Math.min(10, (hop.failures ?? 2) - 2));
    retrying.add(hop);
    hop.retryTimer = clock.setTimer(wait, () => {
      hop.retryTimer = undefined;
      retrying.delete(hop);
      kick(hop);
    });
  }

  /** With a shared store, a connection first takes one of the queue's connection slots, and gives it back when it ends. */
  async function runConnection(hop: Hop, route: RouteConfig): Promise<Ending> {
    let slot: number | null = 0;
    try {
      if (store.acquireConnectionSlot) slot = await store.acquireConnectionSlot(hop.name, route.maxConnections, clock.now());
    } catch (error) {
      hop.starting--;
      throw error;
    }
    if (slot === null) {
      hop.starting--;
      hop.waitingForSlot = true;
      return 'noSlot';
    }
    hop.waitingForSlot = false;
    try {
      return await deliverOn(hop, route);
    } finally {
      if (store.releaseConnectionSlot) {
        // a slot not given back comes free when its lease lapses
        await store.releaseConnectionSlot(hop.name, slot).catch((error: unknown) => logger.warn({ err: error, queue: hop.name }, 'giving back a connection slot failed'));
      }
    }
  }

  async function deliverOn(hop: Hop, route: RouteConfig): Promise<Ending> {
    let connection: OutboundConnection | undefined;
    try {
      connection = await open(hop, route);
    } finally {
      hop.starting--;
    }
    if (!connection) return 'unreachable';
    deps.connected(hop);
    const generation = hop.generation;
    let inHand: DeliveryItem | undefined;
    /** The outcome of the previous attempt, being written while this connection goes on with the next. */
    let recording: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        if (deps.stopping() || !mayConnect(hop.state, clock.now())) return 'held';
        if (!connection.usable || hop.generation !== generation) return 'interrupted';
        inHand = await hop.ready.take();
        if (!inHand) {
          deps.emptied(hop);
          if (await waitForWork(hop)) continue;
          return 'idle';
        }
        if (hop.ready.more) kick(hop); // more waiting: ramp up to maxConnections
        const { written } = await attempt(hop, route, connection, inHand);
        inHand = undefined;
        // one outcome in writing per connection at most
        await recording;
        recording = written;
      }
    } finally {
      connection.close();
      // an item whose outcome was not written (a throw) goes back; a fenced release changes nothing otherwise
      if (inHand) await releaseItems(deps.outcomes, [inHand]);
      await recording;
    }
  }

  /**
   * One attempt on a claimed item; operator actions are checked as it starts (here) and as it ends (recordAttempt).
   * Resolves once the next hop has answered, with the writing of the outcome, which the connection need not wait
   * for: the store takes requests in order, so the outcome is written before the next attempt begins.
   */
  async function attempt(hop: Hop, route: RouteConfig, connection: OutboundConnection, item: DeliveryItem): Promise<{ written: Promise<void> }> {
    const start = await store.beginAttempt(item, clock.now());
    if (start === 'lost') {
      deps.outcomes.claims.drop(item);
      return { written: Promise.resolve() };
    }
    if (start !== 'go') return settled(hop, releaseItems(deps.outcomes, [item]));
    // the item is in an attempt: from here recordAttempt settles it, whatever deliverItem does
    let outcomes: RecipientOutcome[];
    try {
      outcomes = await deliverItem(store, connection, item);
    } catch (error) {
      logger.error({ err: error, queue: hop.name, queueId: item.message.id }, 'delivery attempt failed');
      outcomes = item.recipients.map((r) => ({ position: r.position, result: 'deferred', reply: '451 4.3.0 Local error during the delivery attempt' }));
    }
    // cut off by a stop: nothing was delivered, the item goes back untouched for the next start
    if (stop.signal.aborted) return settled(hop, releaseItems(deps.outcomes, [item]));
    if (connection.usable) hop.answered++;
    const config = deps.config();
    const profile = config.bounceProfiles[route.bounceProfile] ?? config.bounceProfiles.default!;
    const { target } = connection;
    const relay = `${target.name}[${target.host}]:${target.port}`;
    const recorded = recordAttempt(deps.outcomes, { item, outcomes, route, profile, nextHopReports: connection.extensions.has('DSN'), relay }).then((result) => {
      if (result.deferredReply) hop.lastError = result.deferredReply;
      if (result.retryAt !== undefined) deps.deferredUntil(result.retryAt);
    });
    return settled(hop, recorded);
  }

  /** A write about an item that failed has handed the item back (outcomes.ts): a connection takes it again. */
  function settled(hop: Hop, writing: Promise<void>): { written: Promise<void> } {
    const written = writing.catch((error: unknown) => {
      logger.error({ err: error, queue: hop.name }, 'writing the outcome of an attempt failed; the item was handed back');
      kick(hop);
    });
    return { written };
  }

  /** Parks an idle connection until new work (true), its idle time is up, or a stop (false). */
  function waitForWork(hop: Hop): Promise<boolean> {
    if (deps.stopping()) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (hasWork: boolean) => {
        timer.cancel();
        hop.idle = hop.idle.filter((w) => w !== wake);
        resolve(hasWork);
      };
      const timer = clock.setTimer(IDLE_CONNECTION_MS, () => wake(false));
      hop.idle.push(wake);
    });
  }

  /** Resolves the next hop and connects to the first target that answers. */
  async function open(hop: Hop, route: RouteConfig): Promise<OutboundConnection | undefined> {
    const answeredBefore = hop.answered;
    let targets: Target[];
    try {
      targets = route.mx ? await deps.resolver.targets(hop.name, route.port) : smartHostTargets(route.smartHosts!);
    } catch (error) {
      if (!(error instanceof DnsFailure)) throw error;
      if (error.permanent) await failAll(hop, error.reply);
      else deps.connectFailed(hop, error.reply, hop.answered > answeredBefore);
      return undefined;
    }
    let lastError = 'no next hop';
    const { delivery, hostname } = deps.config();
    for (const target of targets) {
      try {
        const options = { name: hostname, protocol: route.protocol, tls: route.tls, clock, signal: stop.signal, ...delivery };
        return await connect(target, options);
      } catch (error) {
        if (!(error instanceof ConnectFailure)) throw error;
        lastError = error.reply;
        logger.info({ queue: hop.name, target: `${target.name} [${target.host}]:${target.port}`, error: error.reply }, 'next hop not reachable');
      }
    }
    deps.connectFailed(hop, lastError, hop.answered > answeredBefore);
    return undefined;
  }

  /** A permanent next-hop failure (NXDOMAIN, null MX): every recipient in the queue fails. */
  async function failAll(hop: Hop, reply: string): Promise<void> {
    const route = routeOf(hop)!;
    const config = deps.config();
    const profile = config.bounceProfiles[route.bounceProfile] ?? config.bounceProfiles.default!;
    for (let item = await hop.ready.take(); item; item = await hop.ready.take()) {
      const outcomes = item.recipients.map((r): RecipientOutcome => ({ position: r.position, result: 'failed', reply }));
      await recordAttempt(deps.outcomes, { item, outcomes, route, profile, nextHopReports: false });
    }
  }

  return {
    kick,
    closeIdle(hop) {
      for (const wake of [...hop.idle]) wake(false);
    },
    retrySlots(hops) {
      for (const hop of hops) if (hop.waitingForSlot && hop.connections === 0) kick(hop);
    },
    async ended(graceMs) {
      for (const hop of retrying) {
        hop.retryTimer?.cancel();
        hop.retryTimer = undefined;
      }
      retrying.clear();
      // wall time: how long an operator's SIGTERM waits, not a schedule of the mail
      const cutOff = setTimeout(() => stop.abort(), graceMs);
      while (running.size > 0) await Promise.all(running);
      clearTimeout(cutOff);
    },
  };
}
