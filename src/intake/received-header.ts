// Our trace header (RFC 5321 §4.4), added in front of every message accepted.
export interface TraceInfo {
  heloName: string | undefined;
  clientHostname: string | undefined;
  clientIp: string;
  serverName: string;
  protocol: string;
  queueId: string;
  recipients: string[];
  date: number;
}
import { rfc5322Date } from '../clock.js';

/** "with" keyword per RFC 3848 and RFC 6531: ESMTP, plus S for TLS and A for AUTH; UTF8SMTP for SMTPUTF8. */
export function withProtocol(options: { utf8: boolean; tls: boolean; authenticated: boolean }): string {
  return (options.utf8 ? 'UTF8SMTP' : 'ESMTP') + (options.tls ? 'S' : '') + (options.authenticated ? 'A' : '');
}

/** For messages Sluice makes itself (delivery reports). */
export function localReceivedHeader(serverName: string, queueId: string, date: number): Buffer {
  return Buffer.from(`Received: by ${serverName} (Sluice) id ${queueId};\r\n\t${rfc5322Date(date)}\r\n`);
}

export function receivedHeader(info: TraceInfo): Buffer {
  const from = `${info.heloName ?? 'unknown'} (${info.clientHostname && info.clientHostname !== `[${info.clientIp}]` ? info.clientHostname + ' ' : ''}[${info.clientIp}])`;
  // "for" only when there is one recipient: it would disclose the others' addresses
  const forClause = info.recipients.length === 1 ? `\r\n\tfor <${info.recipients[0]}>` : '';
  return Buffer.from(`Received: from ${from}\r\n\tby ${info.serverName} (Sluice) with ${info.protocol} id ${info.queueId}${forClause};\r\n\t${rfc5322Date(info.date)}\r\n`, 'utf8');
}
