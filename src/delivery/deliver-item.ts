// Sends one routed item over an open connection (DL-1, DL-2): its recipients in
// as few transactions as their DSN parameters allow, the body streamed from the
// store with our Received header in front, and one outcome per recipient:
// 2xx delivered, 4xx (or a lost connection) deferred, 5xx failed.
import { Readable } from 'node:stream';
import type { DeliveryItem, QueueStore, RecipientOutcome, StoredRecipient } from '../store/types.js';
import type { OutboundConnection, Reply } from './smtp-client.js';

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

export async function deliverItem(store: QueueStore, connection: OutboundConnection, item: DeliveryItem): Promise<RecipientOutcome[]> {
  const outcomes: RecipientOutcome[] = [];
  const { message } = item;
  for (const group of transactionGroups(item.recipients)) {
    if (!connection.usable) {
      for (const r of group) outcomes.push({ position: r.position, result: 'deferred', reply: '451 4.4.2 Connection lost before the message was sent' });
      continue;
    }
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
      eightBit: message.bodyType === '8BITMIME',
      body: Readable.from(contentOf(store, item)),
    });
    for (const recipient of group) {
      const reply = replies.get(recipient.address) ?? { code: 451, text: '451 4.3.0 No reply for this recipient' };
      outcomes.push({ position: recipient.position, result: outcomeOf(reply), reply: reply.text, remoteMta: connection.target.name });
    }
  }
  return outcomes;
}
