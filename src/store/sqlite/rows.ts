// Conversion between database rows and StoredMessage.
import type { NotifyFlag, StoredMessage, StoredRecipient } from '../types.js';

export interface MessageRow {
  seq: number;
  id: string;
  queue: string;
  status: string;
  received_at: number;
  mail_from: string;
  size: number;
  body_type: string | null;
  smtp_utf8: number;
  dsn_ret: string | null;
  dsn_envid: string | null;
  source_ip: string;
  source_name: string;
  helo_name: string | null;
  auth_user: string | null;
  internet_message_id: string | null;
  subject: string | null;
  trace_header: Buffer;
}

/** The recipients columns every query selects, in RecipientRow's shape. */
export const RECIPIENT_COLUMNS = 'position, address, orcpt, notify, status, last_reply, remote_mta, last_attempt_at';

export interface RecipientRow {
  position: number;
  address: string;
  last_reply: string | null;
  remote_mta: string | null;
  last_attempt_at: number | null;
  orcpt: string | null;
  notify: string | null;
  status: string;
}

const defined = <T>(value: T | null): T | undefined => (value === null ? undefined : value);

export function toStoredMessage(row: MessageRow, recipients: RecipientRow[]): StoredMessage {
  return {
    id: row.id,
    queue: row.queue,
    status: row.status as StoredMessage['status'],
    receivedAt: row.received_at,
    mailFrom: row.mail_from,
    size: row.size,
    bodyType: defined(row.body_type) as StoredMessage['bodyType'],
    smtpUtf8: row.smtp_utf8 === 1,
    dsnRet: defined(row.dsn_ret) as StoredMessage['dsnRet'],
    dsnEnvid: defined(row.dsn_envid),
    sourceIp: row.source_ip,
    sourceName: row.source_name,
    heloName: defined(row.helo_name),
    authUser: defined(row.auth_user),
    internetMessageId: defined(row.internet_message_id),
    subject: defined(row.subject),
    traceHeader: row.trace_header,
    recipients: recipients.map(toStoredRecipient),
  };
}

export function toStoredRecipient(row: RecipientRow): StoredRecipient {
  return {
    address: row.address,
    ...(row.orcpt === null ? {} : { orcpt: row.orcpt }),
    ...(row.notify === null ? {} : { notify: row.notify.split(',') as NotifyFlag[] }),
    status: row.status as StoredRecipient['status'],
    ...(row.last_reply === null ? {} : { lastReply: row.last_reply }),
    ...(row.remote_mta === null ? {} : { remoteMta: row.remote_mta }),
    ...(row.last_attempt_at === null ? {} : { lastAttemptAt: row.last_attempt_at }),
  };
}
