// Sends one routed item over an open connection (DL-1, DL-2, DL-10): its
// recipients in as few transactions as their DSN parameters allow, the body
// streamed from the store with our Received header in front, and one outcome
// per recipient: 2xx delivered, 4xx (or a lost connection) deferred, 5xx
// failed. What the message needs (SMTPUTF8, 8BITMIME) is passed on; a next
// hop that lacks it gets no silent downgrade: those recipients fail with
// 5.6.7 (SMTPUTF8) or 5.6.3 (8-bit data; Sluice relays bytes unchanged, so it
// does not convert to quoted-printable).
import type { DeliveryItem, QueueStore, RecipientOutcome, StoredRecipient } from '../store/types.js';
import type { OutboundConnection, Reply } from './smtp-client.js';

export const NO_SMTPUTF8 = '550 5.6.7 The next hop does not support SMTPUTF8 (RFC 6531), which this message needs';
export const NO_8BITMIME = '554 5.6.3 Conversion required but not supported: the next hop does not offer 8BITMIME (RFC 6152)';

export function outcomeOf(reply: Reply): RecipientOutcome['result'] {
  if (reply.code >= 200 && reply.code < 300) return 'delivered';
  if (reply.code >= 500 && reply.code < 600) return 'failed';
  return 'deferred';
}

/** Recipients that can share one transaction: the same NOTIFY and ORCPT to pass on. */
function transactionGroups<R extends StoredRecipient>(recipients: R[]): R[][] {
  const groups = new Map<string, R[]>();
  for (const recipient of recipients) {
    const key = `${recipient.notify?.join(',') ?? ''}|${recipient.orcpt ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), recipient]);
  }
  return [...groups.values()];
}

async function* contentOf(store: QueueStore, item: DeliveryItem): AsyncGenerator<Buffer> {
  yield item.message.traceHeader;
  if (item.body) yield item.body;
  else yield* store.readBody(item.message.id);
}

const nonAscii = (text: string) => /[^\x00-\x7f]/.test(text);

/** Whether the message has an octet above 127: anywhere, or in its header section (up to the first empty line). */
async function hasEightBit(store: QueueStore, item: DeliveryItem, headersOnly: boolean): Promise<boolean> {
  const source = item.body ? [item.body] : store.readBody(item.message.id);
  let tail = '';
  for await (const chunk of source) {
    const text = tail + chunk.toString('latin1');
    const end = headersOnly ? text.indexOf('\r\n\r\n') : -1;
    if (nonAscii(end === -1 ? text : text.slice(0, end))) return true;
    if (end !== -1) return false;
    tail = text.slice(-3);
  }
  return false;
}

/**
 * RFC 6531 §3.4: a message that came with SMTPUTF8 needs it from the next hop when its envelope or its
 * header section is not ASCII. One whose every address and header is ASCII travels unchanged without it.
 */
async function needsSmtpUtf8(store: QueueStore, item: DeliveryItem): Promise<boolean> {
  if (!item.message.smtpUtf8) return false;
  if (nonAscii(item.message.mailFrom) || item.recipients.some((r) => nonAscii(r.address))) return true;
  return hasEightBit(store, item, true);
}

export async function deliverItem(store: QueueStore, connection: OutboundConnection, item: DeliveryItem): Promise<RecipientOutcome[]> {
  const { message } = item;
  const fail = (reply: string) => item.recipients.map((r): RecipientOutcome => ({ position: r.position, result: 'failed', reply, remoteMta: connection.target.name }));
  const eightBit = message.bodyType === '8BITMIME';
  // RFC 6152: declared 8-bit but all 7-bit travels unchanged; real 8-bit data is never converted
  if (eightBit && !connection.extensions.has('8BITMIME') && (await hasEightBit(store, item, false))) return fail(NO_8BITMIME);
  const smtpUtf8 = connection.extensions.has('SMTPUTF8') && message.smtpUtf8;
  if (!smtpUtf8 && (await needsSmtpUtf8(store, item))) return fail(NO_SMTPUTF8);
  const outcomes: RecipientOutcome[] = [];
  for (const group of transactionGroups(item.recipients)) {
    const first = group[0]!;
    const replies = await connection.send({
      from: message.mailFrom,
      to: group.map((r) => r.address),
      dsn: {
        ...(message.dsnRet ? { ret: message.dsnRet } : {}),
        ...(message.dsnEnvid ? { envid: message.dsnEnvid } : {}),
        ...(first.notify ? { notify: first.notify } : {}),
        ...(first.orcpt ? { orcpt: first.orcpt } : {}),
      },
      size: message.size + message.traceHeader.length,
      eightBit: eightBit && connection.extensions.has('8BITMIME'),
      smtpUtf8,
      body: contentOf(store, item),
    });
    for (const recipient of group) {
      const reply = replies.get(recipient.address) ?? { code: 451, text: '451 4.3.0 No reply for this recipient' };
      outcomes.push({ position: recipient.position, result: outcomeOf(reply), reply: reply.text, remoteMta: connection.target.name });
    }
  }
  return outcomes;
}
