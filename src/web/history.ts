// The last hour of queue depth and delivery rate for the Queues page's chart:
// sampled on the server every 30 seconds into a small ring buffer, so the
// chart is there as soon as someone opens the page.
import type { Metrics } from '../observability/metrics.js';
import type { QueueStore } from '../store/types.js';

export interface Sample {
  /** Milliseconds since the epoch (wall clock). */
  at: number;
  /** Messages in every queue. */
  depth: number;
  /** Recipients delivered since the sample before. */
  delivered: number;
}

export const SAMPLE_MS = 30_000;
const SIZE = 120; // one hour

export class History {
  private readonly samples: Sample[] = [];
  private lastDelivered: number | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: { store: QueueStore; metrics: Metrics }) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  list(): readonly Sample[] {
    return this.samples;
  }

  private async deliveredSoFar(): Promise<number> {
    const metric = this.deps.metrics.registry.getSingleMetric('sluice_recipients_total');
    const values = metric ? (await metric.get()).values : [];
    return values.filter((v) => v.labels.outcome === 'delivered').reduce((sum, v) => sum + v.value, 0);
  }

  async sample(): Promise<void> {
    try {
      const depth = (await this.deps.store.listQueues()).reduce((sum, q) => sum + q.messageCount, 0);
      const total = await this.deliveredSoFar();
      const delivered = this.lastDelivered === undefined ? 0 : Math.max(0, total - this.lastDelivered);
      this.lastDelivered = total;
      this.samples.push({ at: Date.now(), depth, delivered });
      if (this.samples.length > SIZE) this.samples.shift();
    } catch {
      // a store that is closing: the next sample tries again
    }
  }
}
