// Decides which delivery status notifications an event calls for and submits
// them (DS-1..DS-3, DL-6): one report per message and event, listing every
// recipient it concerns; none to the null sender <>, none against NOTIFY; the
// report enters Submission like any message.
import type { Clock } from '../clock.js';
import { anyDomainMatches, domainOf } from '../config/domain-pattern.js';
import { postmasterAddress, type Config } from '../config/schema.js';
import { localReceivedHeader } from '../intake/received-header.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { NotifyFlag, QueueStore, StoredMessage } from '../store/types.js';
import { buildReport, statusOf, type ReportAction, type ReportRecipient } from './report.js';

export interface ReportEvent {
  message: StoredMessage;
  action: ReportAction;
  recipients: Array<{
    position: number;
    /** The reply or error that decided it. */
    reply?: string;
    /** Overrides the status read from the reply (expiry: 4.4.7). */
    status?: string;
    remoteMta?: string;
    lastAttemptDate?: number;
    willRetryUntil?: number;
  }>;
  /** DL-6: this is the delay notice of this routed item; it is marked sent in the transaction that enqueues the report. */
  clearsDelayNoticeOf?: number;
}

export interface Notifier {
  /** Submits the report the event calls for; false when it calls for none. */
  report(event: ReportEvent): Promise<boolean>;
}

const FLAG_OF: Record<ReportAction, NotifyFlag> = { failed: 'FAILURE', delayed: 'DELAY', delivered: 'SUCCESS', relayed: 'SUCCESS' };
const CLASS_OF: Record<ReportAction, 2 | 4 | 5> = { failed: 5, delayed: 4, delivered: 2, relayed: 2 };

/** RFC 3461 §4.1: NEVER means none; a NOTIFY list means only those; none given means failures and delays. */
function notifyAllows(notify: NotifyFlag[] | undefined, action: ReportAction): boolean {
  if (notify) return notify.includes(FLAG_OF[action]);
  return action === 'failed' || action === 'delayed';
}

export function createNotifier(deps: { store: QueueStore; clock: Clock; events: MessageEvents; config: () => Config; onSubmitted: () => void }): Notifier {

  function wanted(event: ReportEvent): ReportRecipient[] {
    const { message, action } = event;
    if (message.mailFrom === '') return []; // DS-3: never to <>; a report that fails is dropped
    const config = deps.config();
    if (action === 'delayed') {
      const internal = anyDomainMatches(config.acceptedDomains, domainOf(message.mailFrom));
      if (internal ? !config.dsn.internalDelay : !config.dsn.externalDelay) return [];
    }
    return event.recipients.flatMap((r) => {
      const recipient = message.recipients[r.position];
      if (!recipient || !notifyAllows(recipient.notify, action)) return [];
      return [{
        address: recipient.address,
        ...(recipient.orcpt ? { orcpt: recipient.orcpt } : {}),
        action,
        status: r.status ?? statusOf(r.reply, CLASS_OF[action]),
        ...(r.reply ? { diagnostic: r.reply } : {}),
        ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
        ...(r.lastAttemptDate ? { lastAttemptDate: r.lastAttemptDate } : {}),
        ...(r.willRetryUntil ? { willRetryUntil: r.willRetryUntil } : {}),
      }];
    });
  }

  return {
    async report(event) {
      const recipients = wanted(event);
      if (recipients.length === 0) return false;
      const config = deps.config();
      const { message } = event;
      const now = deps.clock.now();
      const full = event.action === 'failed' && message.dsnRet !== 'HDRS' && message.size <= config.dsn.returnContentLimit;
      const writer = deps.store.receive();
      try {
        const report = buildReport({
          reportingMta: config.node,
          hostname: config.hostname,
          postmaster: postmasterAddress(config),
          message,
          recipients,
          original: async function* () {
            yield message.traceHeader;
            yield* deps.store.readBody(message.id);
          },
          full,
          now,
          reportId: writer.id,
        });
        for await (const chunk of report as AsyncIterable<Buffer>) await writer.write(chunk);
        const stored = await writer.commit({
          mailFrom: '',
          recipients: [{ address: message.mailFrom }],
          receivedAt: now,
          bodyType: full && message.bodyType === '8BITMIME' ? '8BITMIME' : '7BIT',
          smtpUtf8: message.smtpUtf8,
          sourceIp: '127.0.0.1',
          sourceName: 'dsn',
          internetMessageId: `<${writer.id}.dsn@${config.hostname}>`,
          traceHeader: localReceivedHeader(config.hostname, writer.id, now),
        }, event.clearsDelayNoticeOf === undefined ? undefined : { clearsDelayNoticeOf: [event.clearsDelayNoticeOf] });
        deps.events.record({
          event: 'dsn',
          ...aboutMessage(message),
          recipients: recipients.map((r) => r.address),
          action: event.action,
          report: stored.id,
        });
      } catch (error) {
        await writer.abort().catch(() => undefined);
        throw error;
      }
      deps.onSubmitted();
      return true;
    },
  };
}
