// Composition root: builds the parts from a validated config and wires them;
// the only place that picks concrete backends. A message's path: intake →
// store (Submission) → categorizer → delivery queues → delivery.
import { startManagementServer, type ManagementServer } from './api/server.js';
import { managementToken } from './api/token.js';
import { createCategorizer } from './categorizer/categorizer.js';
import { createRoutingTable } from './categorizer/routing-table.js';
import type { Clock } from './clock.js';
import { join } from 'node:path';
import type { Config, ListenerConfig } from './config/schema.js';
import { createClaimKeeper } from './delivery/claims.js';
import { createDeadlines } from './delivery/deadlines.js';
import { createDeliveryManager, type DeliveryManager } from './delivery/engine.js';
import { createMxResolver } from './delivery/mx.js';
import type { OutcomeDeps } from './delivery/outcomes.js';
import { createNotifier } from './dsn/notifier.js';
import { createBackPressure } from './intake/back-pressure.js';
import { startListener, type RunningListener } from './intake/listener.js';
import { startPickupDirectory, type PickupDirectory } from './intake/pickup.js';
import { finishPendingRemovals } from './management/messages.js';
import { createReconfigurer, logReloadFailure, type ReloadPlan } from './management/reconfigure.js';
import { watchConfigFile } from './config/watch.js';
import { createMessageEvents } from './observability/events.js';
import type { Logger } from './observability/logger.js';
import { createMetrics } from './observability/metrics.js';
import { lockDataDir } from './runtime/instance.js';
import { SLUICE_VERSION } from './runtime/version.js';
import { openTrackingLog, retainDaysOf } from './observability/tracking.js';
import { openQueueStore } from './store/open.js';
import { POISON_QUEUE, type QueueStore } from './store/types.js';

export interface Sluice {
  readonly store: QueueStore;
  readonly listeners: RunningListener[];
  readonly management: ManagementServer;
  readonly delivery: DeliveryManager;
  /** IN-8: the pickup and replay directories that are watched. */
  readonly pickups: PickupDirectory[];
  /** RT-3: reads the config file again and applies it (an invalid file throws ConfigError and changes nothing). */
  reload(): Promise<ReloadPlan>;
  /** Resolves when nothing waits in Submission for the categorizer. */
  categorized(): Promise<void>;
  /** Graceful stop: listeners stop accepting, deliveries in flight finish or are handed back, the store closes. */
  stop(): Promise<void>;
}

export async function startSluice(initial: Config, deps: { clock: Clock; logger: Logger; source?: string }): Promise<Sluice> {
  const { clock, logger } = deps;
  // replaced as a whole by a reload; every part reads it through `() => config`
  let config = initial;
  // before anything opens a file there: two servers on one data directory would take each other's claims
  const instance = await lockDataDir(config.dataDir);
  const [store, tracking] = await Promise.all([
    openQueueStore(config, clock),
    openTrackingLog({ dir: config.log.tracking.dir ?? join(config.dataDir, 'tracking'), retainDays: retainDaysOf(config.log.tracking), clock, logger }),
  ]).catch(async (error: unknown) => {
    await instance.release();
    throw error;
  });
  // the delivery engine is made below; the metrics read its queues only when scraped
  const metrics = createMetrics({ node: config.node, store, clock, queues: () => delivery.queues() });
  const events = createMessageEvents({ logger, clock, tracking, metrics });
  let routing = createRoutingTable(config.routes);
  const wakeCategorizer = () => categorizer.wake();
  const notifier = createNotifier({ store, clock, events, config: () => config, onSubmitted: wakeCategorizer });
  const claims = createClaimKeeper({
    store,
    clock,
    logger,
    onReclaimed: (queues) => {
      delivery.notify(queues);
      // messages the categorizer of a dead node held are back in Submission
      categorizer.wake();
    },
    // a shared store (docs/cluster.md): every few sweeps, and when it answers again after an outage, whatever
    // another node left (or this one could not do meanwhile) is looked at again
    onSweep: ({ full, recovered }) => {
      delivery.sweep(full);
      if (recovered) void delivery.resync().catch(() => undefined);
      if (full || recovered) {
        categorizer.wake();
        deadlines.refresh();
      }
    },
  });
  const outcomes: OutcomeDeps = { store, notifier, events, clock, claims, onReleased: () => deadlines.refresh() };
  const delivery = createDeliveryManager({
    store,
    clock,
    logger,
    config: () => config,
    resolver: createMxResolver({ servers: config.dns.servers, timeout: config.dns.timeout }),
    outcomes,
    claims,
    onResubmitted: wakeCategorizer,
  });
  const deadlines = createDeadlines({ store, clock, logger, notifier, outcomes, queueError: (queue) => delivery.lastError(queue) });
  const profileOf = (route: string | null) => {
    const name = config.routes.find((r) => r.name === route)?.bounceProfile ?? 'default';
    return config.bounceProfiles[name] ?? config.bounceProfiles.default!;
  };
  const categorizer = createCategorizer({
    store,
    clock,
    logger,
    events,
    notifier,
    routing: () => routing,
    profile: profileOf,
    onRouted: (queues) => {
      delivery.notify(queues);
      deadlines.refresh();
    },
  });
  const backPressure = createBackPressure({ store, clock, logger, dataDir: config.dataDir, limits: () => config.storage.limits });
  const listeners: RunningListener[] = [];
  const pickups: PickupDirectory[] = [];
  let management: ManagementServer | undefined;
  const suspendedListeners = new Set(await store.suspendedListeners());
  const listen = (listener: ListenerConfig, current: Config) =>
    startListener({ listener, config: current, store, clock, logger, events, onAccepted: wakeCategorizer, backPressure, suspended: suspendedListeners.has(listener.name) });
  const reconfigurer = createReconfigurer({
    node: config.node,
    store,
    delivery,
    logger,
    listeners,
    source: deps.source,
    current: () => config,
    replace: (next) => {
      config = next;
      routing = createRoutingTable(next.routes);
      logger.level = next.log.level;
    },
    startListener: listen,
  });
  const operations = { node: config.node, store, delivery, clock, events, notifier, claims, onReleased: outcomes.onReleased, listeners, tracking, metrics, wakeCategorizer, reconfigurer };
  try {
    for (const listener of config.listeners) listeners.push(await listen(listener, config));
    const { pickup } = config;
    for (const [kind, dir] of [['pickup', pickup.dir], ['replay', pickup.replayDir]] as const) {
      if (dir === undefined) continue;
      const badmailDir = pickup.badmailDir ?? join(config.dataDir, 'badmail');
      const common = { hostname: config.hostname, store, clock, logger, events, backPressure, onAccepted: wakeCategorizer };
      pickups.push(await startPickupDirectory({ ...common, kind, dir, badmailDir, maxMessageSize: pickup.maxMessageSize }));
    }
    // before delivery starts, so a removal a crash interrupted is not delivered instead
    await finishPendingRemovals(operations);
    await delivery.start();
    await deadlines.start();
    // the other nodes of a shared store wake this one (LISTEN/NOTIFY) for the work they make
    store.subscribe?.((event) => {
      if (event.kind === 'submitted' || event.kind === 'resync') categorizer.wake();
      if (event.kind === 'resync') deadlines.refresh();
      delivery.storeEvent(event);
    });
    categorizer.wake();
    const token = await managementToken(config.management.token, config.dataDir);
    management = await startManagementServer({ ...operations, listen: config.management.listen, token, logger });
  } catch (error) {
    await Promise.all([...listeners.map((l) => l.close()), ...pickups.map((p) => p.close())]);
    await categorizer.stop();
    deadlines.stop();
    await delivery.stop();
    await store.close();
    await tracking.close();
    await instance.release();
    throw error;
  }
  const watcher =
    deps.source && config.config.watch
      ? await watchConfigFile(deps.source, () => reconfigurer.reload().catch((error: unknown) => logReloadFailure(logger, 'file changed', error)))
      : undefined;
  const poisoned = await store.listMessages([{ column: 'queue', operator: '-eq', value: POISON_QUEUE, text: true }], 100);
  if (poisoned.length > 0) {
    logger.warn({ messages: poisoned.map((m) => m.id) }, 'messages in the Poison queue: resume or remove them (sluice message list --filter "Queue -eq Poison")');
  }
  const started = management!;
  const { address, port } = started.address;
  await instance.publish(
    {
      version: SLUICE_VERSION,
      node: config.node,
      startedAt: new Date(clock.now()).toISOString(),
      managementUrl: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
      config: deps.source ?? 'embedded default',
    },
    deps.source === undefined,
  );
  logger.info({ node: config.node, dataDir: config.dataDir, version: SLUICE_VERSION }, 'sluice started');
  return {
    store,
    listeners,
    management: started,
    delivery,
    pickups,
    reload: () => reconfigurer.reload(),
    categorized: () => categorizer.idle(),
    async stop() {
      watcher?.close();
      await Promise.all(pickups.map((p) => p.close()));
      await Promise.all([...listeners, ...reconfigurer.retired()].map((l) => l.close()).concat(started.close()));
      await categorizer.stop();
      deadlines.stop();
      await delivery.stop();
      await store.close();
      await tracking.close();
      await instance.release();
      logger.info('sluice stopped');
    },
  };
}
