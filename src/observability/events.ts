// One place where a message event (MG-5) goes out: the message tracking log,
// the metrics, and the structured log at debug level (the tracking log is
// where operators find them; writing each twice on the hot path costs intake
// throughput).
import type { Clock } from '../clock.js';
import type { StoredMessage } from '../store/types.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { TrackingEvent, TrackingLog } from './tracking.js';

/** The fields every event about a message carries. */
export function aboutMessage(message: Pick<StoredMessage, 'id' | 'mailFrom'> & { internetMessageId?: string | null }): Pick<TrackingEvent, 'queueId' | 'messageId' | 'sender'> {
  return { queueId: message.id, ...(message.internetMessageId ? { messageId: message.internetMessageId } : {}), sender: message.mailFrom };
}

export interface MessageEvents {
  record(event: TrackingEvent): void;
}

export function createMessageEvents(deps: { logger: Logger; clock: Clock; tracking: TrackingLog; metrics: Metrics }): MessageEvents {
  const logger = deps.logger.child({ module: 'tracking' });
  return {
    record(event) {
      const { event: name, ...details } = event;
      logger.debug(details, name);
      deps.tracking.record(event);
      deps.metrics.observe(event, deps.clock.now());
    },
  };
}
