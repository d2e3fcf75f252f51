// Builds an RFC 3464 delivery status notification (DS-1): a
// multipart/report; report-type=delivery-status with a human-readable part,
// the message/delivery-status fields, and the original message (RET=FULL) or
// its headers (RET=HDRS, or above the size cap). The MIME structure is made by
// nodemailer's MimeNode; the body of the original is streamed from the store.
import { Readable } from 'node:stream';
import MimeNode from 'nodemailer/lib/mime-node';
import { rfc5322Date } from '../clock.js';
import type { StoredMessage } from '../store/types.js';

export type ReportAction = 'failed' | 'delayed' | 'delivered' | 'relayed';

export interface ReportRecipient {
  address: string;
  orcpt?: string;
  action: ReportAction;
  /** RFC 3463 status, e.g. 5.1.1. */
  status: string;
  /** The reply that decided it, e.g. "550 5.1.1 No such user". */
  diagnostic?: string;
  remoteMta?: string;
  lastAttemptDate?: number;
  willRetryUntil?: number;
}

export interface ReportInput {
  /** Our node name: Reporting-MTA. */
  reportingMta: string;
  /** Host name for the report's Message-ID. */
  hostname: string;
  postmaster: string;
  message: StoredMessage;
  recipients: ReportRecipient[];
  /** The original as stored: our Received header, then the body. */
  original: () => AsyncIterable<Buffer>;
  /** Include the whole original (else its header section only). */
  full: boolean;
  now: number;
  reportId: string;
}


const SUBJECTS: Record<ReportAction, string> = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  delivered: 'Successful Mail Delivery Report',
  relayed: 'Successful Mail Delivery Report',
};

/** The enhanced status code a reply carries, or the class default (RFC 3463). */
export function statusOf(reply: string | undefined, fallbackClass: 2 | 4 | 5): string {
  const match = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply ?? '');
  return match ? match[1]! : `${fallbackClass}.0.0`;
}

function humanText(input: ReportInput): string {
  const action = input.recipients[0]!.action;
  const lines = input.recipients.map((r) => `  <${r.address}>${r.diagnostic ? `: ${r.diagnostic}` : ''}`);
  const intro: Record<ReportAction, string> = {
    failed: 'Your message could not be delivered to the following recipients. This is a permanent error; it will not be retried.',
    delayed: 'Your message has not been delivered yet to the following recipients. It is still being retried; no action is needed.',
    delivered: 'Your message was delivered to the following recipients.',
    relayed: 'Your message was passed on to a mail system that does not send delivery reports, for the following recipients.',
  };
  const retry = action === 'delayed' && input.recipients[0]!.willRetryUntil ? `\r\nDelivery will be attempted until ${rfc5322Date(input.recipients[0]!.willRetryUntil)}.\r\n` : '';
  return `This is the mail system at ${input.reportingMta}.\r\n\r\n${intro[action]}\r\n\r\n${lines.join('\r\n')}\r\n${retry}\r\nQueue id: ${input.message.id}\r\n`;
}

/** The message/delivery-status body (RFC 3464 §2.1): per-message fields, then one block per recipient. */
export function deliveryStatusFields(input: ReportInput): string {
  const perMessage = [`Reporting-MTA: dns; ${input.reportingMta}`];
  if (input.message.dsnEnvid) perMessage.push(`Original-Envelope-Id: ${input.message.dsnEnvid}`);
  perMessage.push(`Arrival-Date: ${rfc5322Date(input.message.receivedAt)}`);
  const blocks = input.recipients.map((r) => {
    const fields = [`Final-Recipient: rfc822; ${r.address}`];
    if (r.orcpt) fields.push(`Original-Recipient: ${r.orcpt.replace(/^([^;]+);\s*/, '$1; ')}`);
    fields.push(`Action: ${r.action}`, `Status: ${r.status}`);
    if (r.remoteMta) fields.push(`Remote-MTA: dns; ${r.remoteMta}`);
    if (r.diagnostic) fields.push(`Diagnostic-Code: smtp; ${r.diagnostic.replace(/\r?\n/g, ' ')}`);
    if (r.lastAttemptDate) fields.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttemptDate)}`);
    if (r.willRetryUntil) fields.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    return fields.join('\r\n');
  });
  return [perMessage.join('\r\n'), ...blocks].join('\r\n\r\n') + '\r\n';
}

/** Header sections larger than this are cut (they are only there for the sender to recognise the message). */
const MAX_HEADER_SECTION = 256 * 1024;

/** Only the header section of the original, up to the blank line. */
async function* headerSection(original: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of original) {
    parts.push(chunk);
    const sofar = Buffer.concat(parts);
    const end = sofar.indexOf('\r\n\r\n');
    if (end !== -1 || sofar.length >= MAX_HEADER_SECTION) {
      yield sofar.subarray(0, end !== -1 ? end + 2 : MAX_HEADER_SECTION);
      return;
    }
  }
  yield Buffer.concat(parts);
}

export function buildReport(input: ReportInput): Readable {
  const action = input.recipients[0]!.action;
  const root = new MimeNode('multipart/report; report-type=delivery-status');
  root.setHeader({
    From: `Mail Delivery System <${input.postmaster}>`,
    To: `<${input.message.mailFrom}>`,
    Subject: SUBJECTS[action],
    Date: rfc5322Date(input.now),
    'Message-ID': `<${input.reportId}.dsn@${input.hostname}>`,
    'Auto-Submitted': action === 'delayed' || action === 'failed' ? 'auto-replied' : 'auto-generated',
  });
  root.createChild('text/plain; charset=utf-8').setContent(humanText(input));
  root.createChild('message/delivery-status').setContent(deliveryStatusFields(input));
  const original = root.createChild(input.full ? 'message/rfc822' : 'text/rfc822-headers');
  original.setContent(Readable.from(input.full ? input.original() : headerSection(input.original())));
  return root.createReadStream();
}

