// Prometheus metrics (MG-5) through prom-client: queue depths and store usage
// read from the store when scraped, and counters and the delivery latency
// histogram fed by message events.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { QueueStore } from '../store/types.js';
import type { TrackingEvent } from './tracking.js';

export interface Metrics {
  readonly registry: Registry;
  observe(event: TrackingEvent, now: number): void;
}

export function createMetrics(deps: { node: string; store: QueueStore }): Metrics {
  const registry = new Registry();
  const registers = [registry];
  new Gauge({
    name: 'sluice_queue_messages',
    help: 'Messages in each queue',
    labelNames: ['queue', 'delivery_type'],
    registers,
    async collect() {
      this.reset();
      for (const queue of await deps.store.listQueues()) this.set({ queue: `${deps.node}/${queue.name}`, delivery_type: queue.deliveryType }, queue.messageCount);
    },
  });
  new Gauge({
    name: 'sluice_store_messages',
    help: 'Messages in the queue store',
    registers,
    async collect() {
      this.set((await deps.store.stats()).messages);
    },
  });
  new Gauge({
    name: 'sluice_store_bytes',
    help: 'Message bytes in the queue store',
    registers,
    async collect() {
      this.set((await deps.store.stats()).bodyBytes);
    },
  });
  const accepted = new Counter({ name: 'sluice_messages_accepted_total', help: 'Messages accepted and stored, by listener', labelNames: ['listener'], registers });
  const recipients = new Counter({
    name: 'sluice_recipients_total',
    help: 'Delivery outcomes per recipient: delivered, deferred, failed',
    labelNames: ['outcome'],
    registers,
  });
  const reports = new Counter({ name: 'sluice_dsn_total', help: 'Delivery status notifications sent, by action', labelNames: ['action'], registers });
  const latency = new Histogram({
    name: 'sluice_delivery_latency_seconds',
    help: 'Time from acceptance to delivery, per delivered recipient',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    registers,
  });

  return {
    registry,
    observe(event, now) {
      switch (event.event) {
        case 'received':
          accepted.inc({ listener: String(event.source ?? '') });
          break;
        case 'delivered':
          recipients.inc({ outcome: 'delivered' }, event.recipients.length);
          if (typeof event.receivedAt === 'number') {
            const seconds = Math.max(0, now - event.receivedAt) / 1000;
            for (let i = 0; i < event.recipients.length; i++) latency.observe(seconds);
          }
          break;
        case 'deferred':
        case 'failed':
          recipients.inc({ outcome: event.event }, event.recipients.length);
          break;
        case 'dsn':
          reports.inc({ action: String(event.action ?? '') });
          break;
        default:
          break;
      }
    },
  };
}
