// The delivery queues (QU-1, QU-2, QU-5, DL-1..DL-4): one per next hop, each
// with up to maxConnections connections that take the oldest ready items from
// the store, deliver them and record the outcome. A next hop that cannot be
// reached puts only its own queue in Retry (DL-3); deferred items come back
// when their retry time is due (DL-4). Only queue state lives in memory, never
// the messages (ST-4).
import { createAlarm, type Clock, type TimerHandle } from '../clock.js';
import type { Config, RouteConfig } from '../config/schema.js';
import { DnsFailure, smartHostTargets, type MxResolver, type Target } from '../categorizer/mx.js';
import type { Notifier } from '../dsn/notifier.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { DeliveryItem, DeliveryType, QueueRef, QueueRetry, QueueStore, RecipientOutcome } from '../store/types.js';
import { deliverItem } from './deliver-item.js';
import { removeItem } from './removal.js';
import { connectionRetryDelay, messageRetryDelay } from './retry-policy.js';
import { ConnectFailure, connect, type OutboundConnection } from './smtp-client.js';

/** Items a connection takes from the store at a time. */
const CLAIM_BATCH = 8;
/** An open connection waits this long for more work before it closes (like Postfix's connection cache). */
const IDLE_CONNECTION_MS = 2_000;
/** QU-1: a delivery queue is forgotten this long after its last message left. */
const EMPTY_QUEUE_LIFETIME_MS = 3 * 60_000;

export type QueueStatus = 'Active' | 'Ready' | 'Retry' | 'Suspended';

export interface QueueState {
  name: string;
  route: string;
  deliveryType: DeliveryType;
  status: QueueStatus;
  connections: number;
  /** Of those, how many wait for work. */
  idleConnections: number;
  consecutiveFailures: number;
  lastError?: string;
  lastRetryTime?: number;
  nextRetryTime?: number;
}

interface Queue extends Omit<QueueState, 'idleConnections'> {
  /** Connections opened but not yet past their first claim: no need to open more until then. */
  starting: number;
  retryTimer?: TimerHandle;
  emptyTimer?: TimerHandle;
  /** Since when the queue has delivered nothing while in Retry (DL-7). */
  idleSince?: number;
  /** Idle connections waiting for work: waking one beats opening another. */
  idle: Array<(hasWork: boolean) => void>;
  /** Connections opened before the last change of the next hop's settings finish their message and close (RT-3). */
  generation: number;
  /** The store holds this queue's Retry state (cleared at the next connection that works). */
  retryStored: boolean;
}

export interface DeliveryManager {
  start(): Promise<void>;
  /** These queues got new ready items. */
  notify(queues: QueueRef[]): void;
  /** The last error of a queue's next hop, if it has one. */
  lastError(queue: string): string | undefined;
  queues(): QueueState[];
  /** MG-2: no connection takes more from the queue (those delivering finish their message); kept across restarts. False if there is no such queue. */
  suspend(queue: string): Promise<boolean>;
  resume(queue: string): Promise<boolean>;
  /** MG-2: connect now, and make the queue's deferred messages ready; returns how many were made ready. */
  retryNow(queue: string): Promise<number>;
  /** MG-2, DL-7: sends the queue's waiting messages back to the categorizer; returns how many. */
  resubmit(queue: string): Promise<number>;
  /** RT-3: the next hop's settings changed: open connections finish their message and the next ones use the new settings. */
  reconnect(queue: string): void;
  /** Stops opening connections; connections finish their current message and hand back the rest. */
  stop(): Promise<void>;
}

export function createDeliveryManager(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  config: () => Config;
  resolver: MxResolver;
  notifier: Notifier;
  events: MessageEvents;
  /** Messages went back to Submission. */
  onResubmitted: () => void;
}): DeliveryManager {
  const { store, clock } = deps;
  const logger = deps.logger.child({ module: 'delivery' });
  const queues = new Map<string, Queue>();
  const running = new Set<Promise<void>>();
  /** Suspended by an operator; the store keeps the flag across restarts. */
  const suspended = new Set<string>();
  let stopping = false;
  /** One timer for all deferred items: at the earliest due time, due items become ready. */
  const due = createAlarm(clock, () => void promoteDue());

  const routeNamed = (name: string): RouteConfig | undefined => deps.config().routes.find((r) => r.name === name);

  function queueFor(name: string, route: RouteConfig): Queue {
    let queue = queues.get(name);
    if (!queue) {
      queue = { name, route: route.name, deliveryType: route.mx ? 'DnsConnectorDelivery' : 'SmartHostConnectorDelivery', status: 'Ready', connections: 0, starting: 0, consecutiveFailures: 0, idle: [], generation: 0, retryStored: false };
      queues.set(name, queue);
    }
    return queue;
  }

  function kick(queue: Queue): void {
    const route = routeNamed(queue.route);
    if (stopping || !route || queue.status === 'Retry' || suspended.has(queue.name)) return;
    queue.emptyTimer?.cancel();
    queue.emptyTimer = undefined;
    const idle = queue.idle.shift();
    if (idle) return idle(true);
    if (queue.starting > 0 || queue.connections >= route.maxConnections) return;
    queue.connections++;
    queue.starting++;
    queue.status = 'Active';
    const session = runConnection(queue, route)
      .catch((error: unknown) => {
        logger.error({ err: error, queue: queue.name }, 'delivery connection failed unexpectedly');
        return false;
      })
      .then((workLeft) => {
        running.delete(session);
        queue.connections--;
        if (queue.connections === 0 && queue.status === 'Active') queue.status = 'Ready';
        if (workLeft) kick(queue);
      });
    running.add(session);
  }

  /** One connection's life; true when it ended by losing the connection, so another should carry on. */
  async function runConnection(queue: Queue, route: RouteConfig): Promise<boolean> {
    let connection: OutboundConnection | undefined;
    try {
      connection = await open(queue, route);
    } finally {
      if (!connection) queue.starting--;
    }
    if (!connection) return false;
    let first = true;
    const generation = queue.generation;
    const current = () => !stopping && connection.usable && !suspended.has(queue.name) && queue.generation === generation;
    try {
      while (current()) {
        const items = await store.claimDeliveries(queue.name, CLAIM_BATCH, clock.now());
        if (first) {
          first = false;
          queue.starting--;
        }
        if (items.length === 0) {
          if (queue.connections === 1) scheduleRemoval(queue);
          if (!(await waitForWork(queue))) return false;
          continue;
        }
        if (items.length === CLAIM_BATCH) kick(queue); // more waiting: ramp up to maxConnections
        for (const [index, item] of items.entries()) {
          if (!current()) {
            const removed = await store.releaseDeliveries(items.slice(index).map((i) => i.itemId));
            for (const item of removed) await removeItem(removalDeps, item, item.pendingAction === 'remove-ndr');
            break;
          }
          await store.beginAttempt(item.itemId);
          await record(queue, route, item, await deliverItem(store, connection, item), connection);
        }
      }
      // evaluated before the finally closes the connection: another should carry on
      return !stopping && (!connection.usable || queue.generation !== generation);
    } finally {
      if (first) queue.starting--;
      connection.close();
    }
  }

  /** Parks an idle connection until new work (true), its idle time is up, or a stop (false). */
  function waitForWork(queue: Queue): Promise<boolean> {
    if (stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (hasWork: boolean) => {
        timer.cancel();
        queue.idle = queue.idle.filter((w) => w !== wake);
        resolve(hasWork);
      };
      const timer = clock.setTimer(IDLE_CONNECTION_MS, () => wake(false));
      queue.idle.push(wake);
    });
  }

  /** Resolves the next hop and connects to the first target that answers; on failure the queue goes to Retry. */
  async function open(queue: Queue, route: RouteConfig): Promise<OutboundConnection | undefined> {
    let targets: Target[];
    try {
      targets = route.mx ? await deps.resolver.targets(queue.name, route.port) : smartHostTargets(route.smartHosts!);
    } catch (error) {
      if (!(error instanceof DnsFailure)) throw error;
      if (error.permanent) await failAll(queue, error.reply);
      else connectionFailed(queue, error.reply);
      return undefined;
    }
    let lastError = 'no next hop';
    const { delivery, hostname } = deps.config();
    for (const target of targets) {
      try {
        const connection = await connect(target, {
          name: hostname,
          protocol: route.protocol,
          tls: route.tls,
          connectTimeout: delivery.connectTimeout,
          commandTimeout: delivery.commandTimeout,
        });
        queue.consecutiveFailures = 0;
        queue.lastError = undefined;
        queue.idleSince = undefined;
        if (queue.retryStored) storeRetry(queue, null);
        return connection;
      } catch (error) {
        if (!(error instanceof ConnectFailure)) throw error;
        lastError = error.reply;
        logger.info({ queue: queue.name, target: `${target.name} [${target.host}]:${target.port}`, error: error.reply }, 'next hop not reachable');
      }
    }
    connectionFailed(queue, lastError);
    return undefined;
  }

  function connectionFailed(queue: Queue, reply: string): void {
    queue.lastError = reply;
    // another connection of this queue still delivers: the next hop is not down
    if (queue.connections > 1) return;
    queue.consecutiveFailures++;
    const { retry } = deps.config();
    const now = clock.now();
    queue.idleSince ??= now;
    if (now - queue.idleSince >= retry.maxIdleTimeBeforeResubmit) {
      resubmit(queue.name).catch((error: unknown) => logger.error({ err: error, queue: queue.name }, 'resubmit failed'));
      return;
    }
    const at = now + connectionRetryDelay(retry, queue.consecutiveFailures);
    queue.lastRetryTime = now;
    enterRetry(queue, at);
    storeRetry(queue, { at, since: now, failures: queue.consecutiveFailures, lastError: reply });
    logger.warn({ queue: queue.name, error: reply, failures: queue.consecutiveFailures, nextRetryTime: new Date(at).toISOString() }, 'queue in retry');
  }

  /** DL-3: no connection until `at`. */
  function enterRetry(queue: Queue, at: number): void {
    queue.status = 'Retry';
    queue.nextRetryTime = at;
    queue.retryTimer?.cancel();
    queue.retryTimer = clock.setTimer(Math.max(0, at - clock.now()), () => {
      queue.status = 'Ready';
      queue.nextRetryTime = undefined;
      kick(queue);
    });
  }

  /** The store keeps a queue's Retry state across restarts and shows it on its messages (QU-3). */
  function storeRetry(queue: Queue, retry: QueueRetry | null): void {
    queue.retryStored = retry !== null;
    store.setQueueRetry(queue.name, retry).catch((error: unknown) => logger.error({ err: error, queue: queue.name }, 'storing the Retry state failed'));
  }

  /** Ends a queue's Retry state: its next connection may go at once. */
  function clearRetry(queue: Queue): void {
    queue.retryTimer?.cancel();
    queue.retryTimer = undefined;
    queue.nextRetryTime = undefined;
    if (queue.status === 'Retry') queue.status = 'Ready';
  }

  /** DL-7, MG-2: the queue's messages go back to the categorizer, so a changed route can take them. */
  async function resubmit(name: string): Promise<number> {
    const queue = queues.get(name);
    if (queue) {
      clearRetry(queue);
      queue.idleSince = undefined;
      queue.consecutiveFailures = 0;
      if (queue.retryStored) storeRetry(queue, null);
    }
    const count = await store.resubmitQueue(name);
    logger.warn({ queue: name, messages: count, lastError: queue?.lastError }, 'queue resubmitted');
    deps.onResubmitted();
    return count;
  }

  /** A permanent next-hop failure (NXDOMAIN, null MX): every recipient in the queue fails. */
  async function failAll(queue: Queue, reply: string): Promise<void> {
    const route = routeNamed(queue.route)!;
    for (;;) {
      const items = await store.claimDeliveries(queue.name, 100, clock.now());
      if (items.length === 0) return;
      for (const item of items) await record(queue, route, item, item.recipients.map((r) => ({ position: r.position, result: 'failed', reply })));
    }
  }

  async function record(queue: Queue, route: RouteConfig, item: DeliveryItem, outcomes: RecipientOutcome[], connection?: OutboundConnection): Promise<void> {
    const config = deps.config();
    const profile = config.bounceProfiles[route.bounceProfile] ?? config.bounceProfiles.default!;
    const now = clock.now();
    // DL-5: a deferral past the retry count or the queue lifetime is final
    const expired = item.attempts + 1 >= profile.maxRetries || (item.expiresAt !== null && now >= item.expiresAt);
    const expiredPositions = new Set(expired ? outcomes.filter((o) => o.result === 'deferred').map((o) => o.position) : []);
    const final = outcomes.map((o): RecipientOutcome => (expiredPositions.has(o.position) ? { ...o, result: 'failed' } : o));
    await reportOutcomes(item, final, expiredPositions, route, now, connection);
    const retryAt = now + messageRetryDelay(profile, item.attempts);
    const pending = await store.recordDelivery(item.itemId, final, retryAt, now);
    const byPosition = new Map(item.recipients.map((r) => [r.position, r]));
    const recipientsOf = (these: RecipientOutcome[]) => these.flatMap((o) => byPosition.get(o.position) ?? []);
    for (const result of ['delivered', 'deferred', 'failed'] as const) {
      const these = final.filter((o) => o.result === result);
      if (these.length === 0) continue;
      deps.events.record({
        event: result,
        ...aboutMessage(item.message),
        recipients: recipientsOf(these).map((r) => r.address),
        queue: queue.name,
        reply: these[0]!.reply,
        ...(these[0]!.remoteMta ? { remoteMta: these[0]!.remoteMta } : {}),
        ...(result === 'delivered' ? { receivedAt: item.message.receivedAt } : {}),
        ...(expired && result === 'failed' ? { expired: true } : {}),
      });
    }
    const deferred = final.filter((o) => o.result === 'deferred');
    if (deferred.length === 0) return;
    queue.lastError = deferred[0]!.reply;
    // an operator acted while this attempt ran (PendingSuspend / PendingRemove)
    if (pending === 'suspend') {
      deps.events.record({ event: 'suspended', ...aboutMessage(item.message), recipients: recipientsOf(deferred).map((r) => r.address), queue: queue.name });
    } else if (pending) {
      await removeItem(removalDeps, { ...item, recipients: recipientsOf(deferred) }, pending === 'remove-ndr');
    } else {
      due.at(retryAt);
    }
  }

  /** Failure reports (expiry gives 4.4.7), and success reports where the next hop will not send them (DS-1, DS-2). */
  async function reportOutcomes(item: DeliveryItem, outcomes: RecipientOutcome[], expired: Set<number>, route: RouteConfig, now: number, connection?: OutboundConnection): Promise<void> {
    const failed = outcomes.filter((o) => o.result === 'failed');
    if (failed.length > 0) {
      await deps.notifier.report({
        message: item.message,
        action: 'failed',
        recipients: failed.map((o) => ({ ...o, ...(expired.has(o.position) ? { status: '4.4.7' } : {}), lastAttemptDate: now })),
      });
    }
    const delivered = outcomes.filter((o) => o.result === 'delivered');
    // RFC 3461 §4.1: a next hop that takes NOTIFY reports success itself
    const action = route.protocol === 'lmtp' ? 'delivered' : connection?.supportsDsn ? undefined : 'relayed';
    if (delivered.length > 0 && action) {
      await deps.notifier.report({ message: item.message, action, recipients: delivered.map((o) => ({ ...o, lastAttemptDate: now })) });
    }
  }

  async function promoteDue(): Promise<void> {
    try {
      notify(await store.promoteDue(clock.now()));
      const next = await store.nextDueTime();
      if (next !== null) due.at(next);
    } catch (error) {
      logger.error({ err: error }, 'promoting due items failed');
    }
  }

  function scheduleRemoval(queue: Queue): void {
    queue.emptyTimer?.cancel();
    queue.emptyTimer = clock.setTimer(EMPTY_QUEUE_LIFETIME_MS, () => {
      store.dropQueueIfEmpty(queue.name).then(
        (dropped) => {
          if (!dropped || queues.get(queue.name) !== queue) return;
          queues.delete(queue.name);
          for (const wake of [...queue.idle]) wake(false);
        },
        (error: unknown) => logger.error({ err: error, queue: queue.name }, 'removing an empty queue failed'),
      );
    });
  }

  function notify(refs: QueueRef[]): void {
    for (const ref of refs) {
      const route = routeNamed(ref.route);
      if (route) kick(queueFor(ref.name, route));
    }
  }

  const removalDeps = { store, notifier: deps.notifier, events: deps.events, clock };

  async function setSuspended(name: string, suspend: boolean): Promise<boolean> {
    if (!(await store.setQueueSuspended(name, suspend))) return false;
    logger.warn({ queue: name }, suspend ? 'queue suspended' : 'queue resumed');
    const queue = queues.get(name);
    if (suspend) {
      suspended.add(name);
      if (queue) for (const wake of [...queue.idle]) wake(false);
      return true;
    }
    suspended.delete(name);
    await wake(name);
    return true;
  }

  /** Lets a queue connect now: the one in memory, else the store's (a queue not seen since the start). */
  async function wake(name: string): Promise<void> {
    const queue = queues.get(name);
    if (queue) return kick(queue);
    const record = (await store.listQueues()).find((q) => q.name === name);
    if (record?.route) notify([{ name, route: record.route }]);
  }

  return {
    async start() {
      for (const record of await store.listQueues()) {
        if (record.suspended) suspended.add(record.name);
        const route = record.route === null ? undefined : routeNamed(record.route);
        if (record.retry && route) {
          const queue = queueFor(record.name, route);
          Object.assign(queue, { consecutiveFailures: record.retry.failures, lastError: record.retry.lastError, lastRetryTime: record.retry.since, retryStored: true });
          enterRetry(queue, record.retry.at);
        }
        if (record.route && record.messageCount > 0) notify([{ name: record.name, route: record.route }]);
      }
      const next = await store.nextDueTime();
      if (next !== null) due.at(next);
    },
    notify,
    lastError: (name) => queues.get(name)?.lastError,
    queues: () =>
      [...queues.values()].map(({ starting: _s, retryTimer: _r, emptyTimer: _e, generation: _g, retryStored: _rs, idle, ...state }) => ({
        ...state,
        status: suspended.has(state.name) ? 'Suspended' : state.status,
        idleConnections: idle.length,
      })),
    suspend: (name) => setSuspended(name, true),
    resume: (name) => setSuspended(name, false),
    async retryNow(name) {
      const ready = await store.retryQueue(name);
      const queue = queues.get(name);
      if (queue) clearRetry(queue);
      await wake(name);
      return ready;
    },
    resubmit,
    reconnect(name) {
      const queue = queues.get(name);
      if (!queue) return;
      queue.generation++;
      for (const wake of [...queue.idle]) wake(false);
    },
    async stop() {
      stopping = true;
      due.cancel();
      for (const queue of queues.values()) {
        queue.retryTimer?.cancel();
        queue.emptyTimer?.cancel();
        for (const wake of [...queue.idle]) wake(false);
      }
      await Promise.all(running);
    },
  };
}
