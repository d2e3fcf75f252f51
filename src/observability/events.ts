// One place where events go out (MG-5): a message event goes to the message
// tracking log, the metrics, and the log; an SMTP session event (connect,
// disconnect, a refusal, an AUTH failure) to the log and the metrics. At the default level the
// log has one line per event that Postfix's maillog has (docs/logging.md):
// `accepted` for each message received, one `delivery` line per recipient of
// each attempt (status sent, deferred or bounced), and the session events.
// At debug, each tracking event is logged as well, under its own name.
import type { Clock } from '../clock.js';
import type { StoredMessage } from '../store/types.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { TrackingEvent, TrackingLog } from './tracking.js';

/** The fields every event about a message carries. */
export function aboutMessage(message: Pick<StoredMessage, 'id' | 'mailFrom'> & { internetMessageId?: string | null }): Pick<TrackingEvent, 'queueId' | 'messageId' | 'sender'> {
  return { queueId: message.id, ...(message.internetMessageId ? { messageId: message.internetMessageId } : {}), sender: message.mailFrom };
}

/** What an SMTP session event says: the listener, the session, the client and what happened. */
export interface SessionEvent {
  event: 'connect' | 'disconnect' | 'reject' | 'auth failed';
  listener: string;
  session: string;
  /** The client's IP address. */
  client: string;
  /** Its name by reverse DNS, or `unknown`. */
  clientName: string;
  [detail: string]: unknown;
}

export interface MessageEvents {
  record(event: TrackingEvent): void;
  /** An SMTP session event, for the log and the metrics. */
  session(event: SessionEvent): void;
}

/** Postfix's delivery statuses, by Sluice's per-recipient outcome. */
export const DELIVERY_STATUS = { delivered: 'sent', deferred: 'deferred', failed: 'bounced' } as const;

const ENHANCED = /^([245])\d\d[ -]([245]\.\d{1,3}\.\d{1,3})\b/;

/** The enhanced status code of a reply, or the class of its basic code (`4.0.0`). */
export function dsnOf(reply: string): string {
  const match = ENHANCED.exec(reply);
  if (match) return match[2]!;
  const code = /^([245])\d\d/.exec(reply)?.[1];
  return code ? `${code}.0.0` : '4.0.0';
}

export function createMessageEvents(deps: { logger: Logger; clock: Clock; tracking: TrackingLog; metrics: Metrics }): MessageEvents {
  const tracked = deps.logger.child({ module: 'tracking' });
  const smtp = deps.logger.child({ module: 'smtp' });
  const intake = deps.logger.child({ module: 'intake' });
  const delivery = deps.logger.child({ module: 'delivery' });

  function logAccepted(event: TrackingEvent): void {
    const fromSmtp = event.client !== undefined;
    intake.info(
      {
        queueId: event.queueId,
        from: event.sender,
        size: event.size,
        nrcpt: event.recipients.length,
        to: event.recipients,
        ...(fromSmtp ? { client: event.client, clientName: event.clientName ?? 'unknown', listener: event.source } : { source: event.source }),
        ...(event.file !== undefined ? { file: event.file } : {}),
        ...(event.tls ? { tls: event.tls } : {}),
        ...(event.authUser ? { user: event.authUser } : {}),
        ...(event.messageId ? { messageId: event.messageId } : {}),
      },
      'accepted',
    );
  }

  function logDelivery(event: TrackingEvent & { event: keyof typeof DELIVERY_STATUS }): void {
    const now = deps.clock.now();
    const reply = String(event.reply ?? '');
    const delay = typeof event.receivedAt === 'number' ? Math.round(Math.max(0, now - event.receivedAt) / 10) / 100 : undefined;
    for (const to of event.recipients) {
      delivery.info(
        {
          queueId: event.queueId,
          to,
          relay: event.relay ?? event.remoteMta ?? 'none',
          ...(delay !== undefined ? { delay } : {}),
          ...(typeof event.attempt === 'number' ? { attempt: event.attempt } : {}),
          dsn: event.expired ? '4.4.7' : dsnOf(reply),
          status: DELIVERY_STATUS[event.event],
          reply,
          ...(event.expired ? { expired: true } : {}),
          queue: event.queue,
        },
        'delivery',
      );
    }
  }

  return {
    record(event) {
      if (tracked.isLevelEnabled('debug')) {
        const { event: name, ...details } = event;
        tracked.debug(details, name);
      }
      if (event.event === 'received') logAccepted(event);
      else if (event.event === 'delivered' || event.event === 'deferred' || event.event === 'failed') logDelivery(event as TrackingEvent & { event: keyof typeof DELIVERY_STATUS });
      deps.tracking.record(event);
      deps.metrics.observe(event, deps.clock.now());
    },
    session(event) {
      const { event: name, ...details } = event;
      if (name === 'auth failed') smtp.warn(details, name);
      else smtp.info(details, name);
      deps.metrics.session(event);
    },
  };
}
