// Prometheus metrics (MG-5) through prom-client, documented in docs/metrics.md.
// What lives in the store (queue depths, queue state, the oldest message of
// each queue, store totals) is read when scraped, once per scrape whatever the
// number of metrics that show it; counters and the delivery latency histogram
// are fed by the same events that go to the log and the tracking log
// (events.ts): message events and SMTP session events. Node's process metrics
// (CPU, memory, event loop lag, GC) are prom-client's defaults, under their
// standard names. No label ever carries a recipient, a sender or a client
// address: labels are queues, routes, listeners and fixed sets of values.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { QueueView as LiveQueue } from '../delivery/engine.js';
import type { QueueStatus } from '../delivery/queue-state.js';
import { REPLIES } from '../intake/replies.js';
import type { QueueRecord, QueueStore, StoreStats } from '../store/types.js';
import type { SessionEvent } from './events.js';
import type { TrackingEvent } from './tracking.js';

export interface Metrics {
  readonly registry: Registry;
  observe(event: TrackingEvent, now: number): void;
  /** An SMTP session event: connect, disconnect, a refusal, an AUTH failure. */
  session(event: SessionEvent): void;
}

export interface MetricsDeps {
  node: string;
  store: QueueStore;
  /** For message ages; the system clock unless given. */
  clock?: Clock;
  /** The delivery engine's live queues (status, connections, route); read when scraped and to name an event's route. */
  queues?: () => LiveQueue[];
}

/** Every queue status, as the status gauge labels them. */
const STATUSES: readonly QueueStatus[] = ['Active', 'Ready', 'Retry', 'Suspended'];
/** Postfix's delivery status words, by Sluice's per-recipient outcome (as the log writes them). */
const STATUS_WORD = { delivered: 'sent', deferred: 'deferred', failed: 'bounced' } as const;
/** Reasons a refusal may be counted under: Sluice's reply names, and `other` for smtp-server's own replies. */
const REASONS = new Set<string>(Object.keys(REPLIES));
/** AUTH mechanisms counted by name; anything else is `other`. */
const AUTH_METHODS = new Set(['PLAIN', 'LOGIN', 'CRAM-MD5', 'XOAUTH2']);

/** Node's process metrics, collected once per process (their collectors are process-wide) and shared by every registry. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** What one scrape reads from the store and the delivery engine. */
interface Snapshot {
  now: number;
  queues: QueueRecord[];
  live: Map<string, LiveQueue>;
  /** Receipt time of the oldest message in each non-empty queue. */
  oldest: Map<string, number>;
  stats: StoreStats;
  pending: number;
}

export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const now = () => (deps.clock ? deps.clock.now() : Date.now());
  const identity = (queue: string) => `${deps.node}/${queue}`;
  const liveQueues = (): LiveQueue[] => {
    try {
      return deps.queues?.() ?? [];
    } catch {
      // the delivery engine is not there yet (a scrape while starting)
      return [];
    }
  };

  // one read of the store per scrape: the collectors of one scrape run together and share it
  let reading: Promise<Snapshot> | undefined;
  const snapshot = (): Promise<Snapshot> => {
    reading ??= read().finally(() => {
      reading = undefined;
    });
    return reading;
  };
  async function read(): Promise<Snapshot> {
    const [queues, stats] = await Promise.all([deps.store.listQueues(), deps.store.stats()]);
    // the oldest message of a queue is its first in receipt order: one row per non-empty queue
    const oldest = new Map<string, number>();
    await Promise.all(
      queues
        .filter((q) => q.messageCount > 0)
        .map(async (q) => {
          const [first] = await deps.store.listMessages([{ column: 'queue', operator: '-eq', value: q.name, text: true }], 1);
          if (first) oldest.set(q.name, first.receivedAt);
        }),
    );
    return { now: now(), queues, stats, oldest, live: new Map(liveQueues().map((q) => [q.name, q])), pending: deps.store.pendingOperations() };
  }
  const statusOf = (record: QueueRecord, live: LiveQueue | undefined, at: number): QueueStatus => {
    if (record.suspended) return 'Suspended';
    if (live) return live.status;
    return record.retry && record.retry.at > at ? 'Retry' : 'Ready';
  };

  // queues, read when scraped
  new Gauge({
    name: 'sluice_queue_messages',
    help: 'Messages in each queue',
    labelNames: ['queue', 'delivery_type'],
    registers,
    async collect() {
      const { queues } = await snapshot();
      this.reset();
      for (const queue of queues) this.set({ queue: identity(queue.name), delivery_type: queue.deliveryType }, queue.messageCount);
    },
  });
  new Gauge({
    name: 'sluice_queue_oldest_message_age_seconds',
    help: 'Age of the oldest message in each queue (0 when the queue is empty)',
    labelNames: ['queue'],
    registers,
    async collect() {
      const { queues, oldest, now: at } = await snapshot();
      this.reset();
      for (const queue of queues) {
        const received = oldest.get(queue.name);
        this.set({ queue: identity(queue.name) }, received === undefined ? 0 : Math.max(0, at - received) / 1000);
      }
    },
  });
  new Gauge({
    name: 'sluice_queue_status',
    help: 'Status of each queue: 1 for the status it is in (Active, Ready, Retry, Suspended), 0 for the others',
    labelNames: ['queue', 'status'],
    registers,
    async collect() {
      const { queues, live, now: at } = await snapshot();
      this.reset();
      for (const queue of queues) {
        const current = statusOf(queue, live.get(queue.name), at);
        for (const status of STATUSES) this.set({ queue: identity(queue.name), status }, status === current ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'sluice_queue_retry',
    help: 'Whether each queue is in Retry (1) because its next hop could not be reached, or not (0)',
    labelNames: ['queue'],
    registers,
    async collect() {
      const { queues, live, now: at } = await snapshot();
      this.reset();
      for (const queue of queues) this.set({ queue: identity(queue.name) }, statusOf(queue, live.get(queue.name), at) === 'Retry' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sluice_queue_retry_failures',
    help: 'Failed connection attempts in a row of each queue in Retry (0 otherwise)',
    labelNames: ['queue'],
    registers,
    async collect() {
      const { queues } = await snapshot();
      this.reset();
      for (const queue of queues) this.set({ queue: identity(queue.name) }, queue.retry?.failures ?? 0);
    },
  });
  new Gauge({
    name: 'sluice_queue_connections',
    help: 'Delivery connections open for each queue',
    labelNames: ['queue'],
    registers,
    async collect() {
      const { live } = await snapshot();
      this.reset();
      for (const queue of live.values()) this.set({ queue: identity(queue.name) }, queue.connections);
    },
  });

  // the store, read when scraped
  new Gauge({
    name: 'sluice_store_messages',
    help: 'Messages in the queue store',
    registers,
    async collect() {
      this.set((await snapshot()).stats.messages);
    },
  });
  new Gauge({
    name: 'sluice_store_bytes',
    help: 'Message bytes in the queue store',
    registers,
    async collect() {
      this.set((await snapshot()).stats.bodyBytes);
    },
  });
  new Gauge({
    name: 'sluice_store_pending_operations',
    help: 'Requests sent to the queue store and not answered yet',
    registers,
    async collect() {
      this.set((await snapshot()).pending);
    },
  });
  /** A counter kept by the store since it opened, copied at each scrape. */
  const storeCounter = (name: string, help: string, value: (stats: StoreStats) => number) =>
    new Counter({
      name,
      help,
      registers,
      async collect() {
        const total = value((await snapshot()).stats);
        this.reset();
        if (total > 0) this.inc(total);
      },
    });
  storeCounter('sluice_store_transactions_total', 'Write transactions the queue store committed', (s) => s.transactions);
  storeCounter('sluice_store_synced_transactions_total', 'Of those, the ones flushed to disk (group commit: many messages share one flush)', (s) => s.syncedTransactions);
  storeCounter('sluice_store_messages_committed_total', 'Messages the queue store made durable', (s) => s.messagesCommitted);

  // message events
  const accepted = new Counter({ name: 'sluice_messages_accepted_total', help: 'Messages accepted and stored, by listener', labelNames: ['listener'], registers });
  const recipients = new Counter({
    name: 'sluice_recipients_total',
    help: 'Delivery outcomes per recipient: delivered, deferred, failed',
    labelNames: ['outcome'],
    registers,
  });
  const byRoute = new Counter({
    name: 'sluice_delivery_recipients_total',
    help: 'Recipients of delivery attempts by route and status (sent, deferred, bounced)',
    labelNames: ['route', 'status'],
    registers,
  });
  const reports = new Counter({ name: 'sluice_dsn_total', help: 'Delivery status notifications sent, by action', labelNames: ['action'], registers });
  const latency = new Histogram({
    name: 'sluice_delivery_latency_seconds',
    help: 'Time from acceptance to delivery, per delivered recipient',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    registers,
  });

  // SMTP session events
  const sessionsOpen = new Map<string, number>();
  new Gauge({
    name: 'sluice_smtp_sessions',
    help: 'SMTP sessions open, by listener',
    labelNames: ['listener'],
    registers,
    collect() {
      this.reset();
      for (const [listener, open] of sessionsOpen) this.set({ listener }, open);
    },
  });
  const sessions = new Counter({ name: 'sluice_smtp_sessions_total', help: 'SMTP sessions opened, by listener', labelNames: ['listener'], registers });
  const refusals = new Counter({
    name: 'sluice_smtp_refusals_total',
    help: 'Replies refusing something to an SMTP client, by listener, reason and reply code',
    labelNames: ['listener', 'reason', 'code'],
    registers,
  });
  const authFailures = new Counter({ name: 'sluice_auth_failures_total', help: 'Failed AUTH attempts, by listener and mechanism', labelNames: ['listener', 'method'], registers });

  /** The route feeding a queue, as the delivery engine knows it (looked up again when a queue is new to it). */
  const routes = new Map<string, string>();
  const routeOf = (queue: unknown): string => {
    const name = String(queue ?? '');
    if (!routes.has(name)) {
      routes.clear();
      for (const live of liveQueues()) routes.set(live.name, live.route);
    }
    return routes.get(name) ?? 'none';
  };
  const codeOf = (reply: unknown) => /^[45]\d\d/.exec(String(reply ?? ''))?.[0] ?? 'other';

  return {
    registry: Registry.merge([registry, processMetrics()]),
    observe(event, at) {
      switch (event.event) {
        case 'received':
          accepted.inc({ listener: String(event.source ?? '') });
          break;
        case 'delivered':
          recipients.inc({ outcome: 'delivered' }, event.recipients.length);
          byRoute.inc({ route: routeOf(event.queue), status: STATUS_WORD.delivered }, event.recipients.length);
          if (typeof event.receivedAt === 'number') {
            const seconds = Math.max(0, at - event.receivedAt) / 1000;
            for (let i = 0; i < event.recipients.length; i++) latency.observe(seconds);
          }
          break;
        case 'deferred':
        case 'failed':
          recipients.inc({ outcome: event.event }, event.recipients.length);
          byRoute.inc({ route: routeOf(event.queue), status: STATUS_WORD[event.event] }, event.recipients.length);
          break;
        case 'dsn':
          reports.inc({ action: String(event.action ?? '') });
          break;
        default:
          break;
      }
    },
    session(event) {
      const listener = event.listener;
      switch (event.event) {
        case 'connect':
          sessions.inc({ listener });
          sessionsOpen.set(listener, (sessionsOpen.get(listener) ?? 0) + 1);
          break;
        case 'disconnect': {
          sessionsOpen.set(listener, Math.max(0, (sessionsOpen.get(listener) ?? 0) - 1));
          break;
        }
        case 'reject': {
          const reason = typeof event.reason === 'string' && REASONS.has(event.reason) ? event.reason : 'other';
          refusals.inc({ listener, reason, code: codeOf(event.reply) });
          break;
        }
        case 'auth failed': {
          const method = String(event.method ?? '').toUpperCase();
          authFailures.inc({ listener, method: AUTH_METHODS.has(method) ? method : 'other' });
          refusals.inc({ listener, reason: 'authFailed', code: codeOf(event.reply) });
          break;
        }
        default:
          break;
      }
    },
  };
}
