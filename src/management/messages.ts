// Messages as an operator sees and steers them (QU-3, MG-3): list and show by
// identity or filter across all queues, suspend, resume, remove (with or
// without NDR) and export to .eml. A message in two queues is two entries, one
// per routed item; the bare id names all of them. Actions go through the list
// in batches, by item, so a filter over a million messages never holds the
// store for long; a message being delivered becomes PendingSuspend /
// PendingRemove and the delivery engine finishes the action.
import type { Clock } from '../clock.js';
import type { DeliveryManager } from '../delivery/engine.js';
import { removeItem, type OutcomeDeps } from '../delivery/outcomes.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import { decodeHeaderText } from '../mail/header-text.js';
import { SUBMISSION_QUEUE, type ColumnCondition, type Condition, type ListedMessage, type ListedStatus, type QueueStore } from '../store/types.js';
import { ManagementError, badRequest, checkSelector, notFound, type Selector } from './errors.js';
import { mapComparisons, parseFilter, resolveFilter, type PropertyMap } from './filter.js';

/** Every QU-3 message status, as filters name them. */
export const MESSAGE_STATUSES: readonly ListedStatus[] = ['Active', 'Ready', 'Retry', 'Suspended', 'PendingSuspend', 'PendingRemove'];

/** The filterable message properties (MG-1), by lower-case name. */
export const MESSAGE_PROPERTIES: PropertyMap = {
  id: { column: 'id', type: 'text' },
  queue: { column: 'queue', type: 'text' },
  status: { column: 'status', type: 'text', values: MESSAGE_STATUSES },
  datereceived: { column: 'received_at', type: 'date' },
  expirationtime: { column: 'expires_at', type: 'date' },
  fromaddress: { column: 'mail_from', type: 'text' },
  internetmessageid: { column: 'internet_message_id', type: 'text' },
  lasterror: { column: 'last_error', type: 'text' },
  messagesourcename: { column: 'source_name', type: 'text' },
  sourceip: { column: 'source_ip', type: 'text' },
  retrycount: { column: 'attempts', type: 'number' },
  size: { column: 'size', type: 'size' },
  subject: { column: 'subject', type: 'text' },
  // any recipient the entry lists (of its queue; all of them in Submission)
  recipients: { column: 'recipients', type: 'text', many: true },
};

export interface MessageView {
  Identity: string;
  Queue: string;
  Status: ListedMessage['status'];
  DateReceived: string;
  ExpirationTime: string | null;
  FromAddress: string;
  InternetMessageId: string | null;
  LastError: string | null;
  MessageSourceName: string;
  RetryCount: number;
  /** Spam confidence level: Sluice does no content filtering, so it is never set. */
  SCL: null;
  Size: number;
  SourceIP: string;
  Subject: string | null;
  Recipients: Array<{ Address: string; Status: string; LastError: string | null }>;
}

export interface MessageDeps extends OutcomeDeps {
  node: string;
  store: QueueStore;
  delivery: DeliveryManager;
  events: MessageEvents;
  clock: Clock;
  /** Messages went back to Submission (resumed from Poison). */
  wakeCategorizer: () => void;
}

/** Which messages: one by identity (`<node>/<queue>/<id>`, or the bare id for all its queues), or every match of a filter. */
export type MessageSelector = Selector;

const BATCH = 500;

const text = (column: string, operator: ColumnCondition['operator'], value: string): ColumnCondition => ({ column, operator, value, text: true });

export function view(node: string, message: ListedMessage): MessageView {
  return {
    Identity: `${node}/${message.queue}/${message.id}`,
    Queue: `${node}/${message.queue}`,
    Status: message.status,
    DateReceived: new Date(message.receivedAt).toISOString(),
    ExpirationTime: message.expiresAt === null ? null : new Date(message.expiresAt).toISOString(),
    FromAddress: message.mailFrom,
    InternetMessageId: message.internetMessageId,
    LastError: message.lastError,
    MessageSourceName: message.sourceName,
    RetryCount: message.attempts,
    SCL: null,
    Size: message.size,
    SourceIP: message.sourceIp,
    Subject: decodeHeaderText(message.subject),
    Recipients: message.recipients.map((r) => ({ Address: r.address, Status: r.status, LastError: r.lastReply ?? null })),
  };
}

export function conditionsFor(deps: MessageDeps, selector: MessageSelector, required: boolean): Condition[] {
  if (required || (selector.identity !== undefined && selector.filter !== undefined)) checkSelector(selector);
  if (selector.identity !== undefined) {
    const parts = selector.identity.split('/');
    if (parts.length === 1 && parts[0]) return [text('id', '-eq', parts[0])];
    if (parts.length === 3 && parts.every(Boolean)) {
      // on a shared store the node part names the node that listed it: every node of the cluster takes it
      if (!deps.store.shared && parts[0]!.toLowerCase() !== deps.node.toLowerCase()) throw notFound(`no message ${selector.identity} on node ${deps.node}`);
      return [text('queue', '-eq', parts[1]!), text('id', '-eq', parts[2]!)];
    }
    throw badRequest(`"${selector.identity}" is not a message identity (<node>/<queue>/<id> or <id>)`);
  }
  if (selector.filter !== undefined) {
    const expression = mapComparisons(parseFilter(selector.filter), (c) =>
      // Queue may be written as an identity, as the queue list shows it
      c.property.toLowerCase() === 'queue' && typeof c.value === 'string' && c.value.includes('/') ? { ...c, value: queueOfIdentity(deps, c.value) } : c,
    );
    return resolveFilter(expression, MESSAGE_PROPERTIES, deps.clock.now());
  }
  return [];
}

/** The queue a queue identity names: `<node>/<queue>` of this node, or of any node on a shared store. */
function queueOfIdentity(deps: MessageDeps, identity: string): string {
  const slash = identity.indexOf('/');
  const node = identity.slice(0, slash);
  return deps.store.shared || node.toLowerCase() === deps.node.toLowerCase() ? identity.slice(slash + 1) : identity;
}

/** The matching messages, up to `limit`; none for an identity is a 404. */
async function mustExist(deps: MessageDeps, selector: MessageSelector, conditions: Condition[], limit = BATCH): Promise<ListedMessage[]> {
  const found = await deps.store.listMessages(conditions, limit);
  if (selector.identity !== undefined && found.length === 0) throw notFound(`no message ${selector.identity}`);
  return found;
}

export async function listMessages(deps: MessageDeps, selector: MessageSelector, limit: number): Promise<{ messages: MessageView[]; truncated: boolean }> {
  const found = await mustExist(deps, selector, conditionsFor(deps, selector, false), limit + 1);
  return { messages: found.slice(0, limit).map((m) => view(deps.node, m)), truncated: found.length > limit };
}

export type MessageAction = 'suspend' | 'resume' | 'remove';

/** The statuses an action skips: those it has already reached (so each batch moves on) or cannot change. */
const NOT_YET: Record<MessageAction, ListedStatus[]> = {
  suspend: ['Suspended', 'PendingSuspend', 'PendingRemove'],
  resume: ['Ready', 'Retry', 'Active', 'PendingRemove'],
  remove: ['PendingRemove'],
};

/** The items an action applies to: the selection, less messages still in Submission (never acted on) and those it skips. */
async function actionConditions(deps: MessageDeps, selector: MessageSelector, action: MessageAction): Promise<Condition[]> {
  const selected = conditionsFor(deps, selector, true);
  await mustExist(deps, selector, selected);
  return [...selected, text('queue', '-ne', SUBMISSION_QUEUE), ...NOT_YET[action].map((status) => text('status', '-ne', status))];
}

/**
 * What an action would do, without doing it (a dry run): the entries it would act on now, at most `limit`.
 * A Suspended entry would be suspended, an Active one would become PendingSuspend / PendingRemove.
 */
export async function planMessageAction(
  deps: MessageDeps,
  selector: MessageSelector,
  action: MessageAction,
  limit: number,
): Promise<{ dryRun: true; action: MessageAction; messages: MessageView[]; truncated: boolean }> {
  const found = await deps.store.listMessages(await actionConditions(deps, selector, action), limit + 1);
  return { dryRun: true, action, messages: found.slice(0, limit).map((m) => view(deps.node, m)), truncated: found.length > limit };
}

/**
 * Runs an action over every selected routed item, a batch at a time. The conditions exclude the items the
 * action has already reached, so each batch moves on; messages still in Submission are never acted on.
 */
async function eachBatch(deps: MessageDeps, selector: MessageSelector, action: MessageAction, act: (batch: ListedMessage[]) => Promise<number>): Promise<number> {
  const conditions = await actionConditions(deps, selector, action);
  let total = 0;
  for (;;) {
    const batch = await deps.store.listMessages(conditions, BATCH);
    if (batch.length === 0) break;
    total += await act(batch);
  }
  if (total === 0 && selector.identity !== undefined) {
    throw new ManagementError(409, 'Conflict', `message ${selector.identity} is not in a state this action applies to (messages in Submission wait for the categorizer)`);
  }
  return total;
}

const readyRecipients = (message: ListedMessage) => message.recipients.filter((r) => r.status === 'Ready').map((r) => r.address);

export async function suspendMessages(deps: MessageDeps, selector: MessageSelector): Promise<{ Suspended: number; PendingSuspend: number }> {
  const result = { Suspended: 0, PendingSuspend: 0 };
  await eachBatch(deps, selector, 'suspend', async (batch) => {
    const { suspended, pending } = await deps.store.suspendItems(batch.map((m) => m.itemId!));
    const now = new Set(suspended);
    for (const message of batch.filter((m) => now.has(m.itemId!))) {
      deps.events.record({ event: 'suspended', ...aboutMessage(message), recipients: readyRecipients(message), queue: message.queue });
    }
    result.Suspended += suspended.length;
    result.PendingSuspend += pending.length;
    return suspended.length + pending.length;
  });
  return result;
}

export async function resumeMessages(deps: MessageDeps, selector: MessageSelector): Promise<{ Resumed: number }> {
  let resumed = 0;
  await eachBatch(deps, selector, 'resume', async (batch) => {
    const result = await deps.store.resumeItems(batch.map((m) => m.itemId!));
    for (const message of batch) {
      deps.events.record({ event: 'resumed', ...aboutMessage(message), recipients: readyRecipients(message), queue: message.queue });
    }
    deps.delivery.notify(result.queues);
    if (result.resubmitted > 0) deps.wakeCategorizer();
    resumed += result.resumed;
    return result.resumed;
  });
  return { Resumed: resumed };
}

export async function removeMessages(deps: MessageDeps, selector: MessageSelector, ndr: boolean): Promise<{ Removed: number; PendingRemove: number }> {
  const result = { Removed: 0, PendingRemove: 0 };
  await eachBatch(deps, selector, 'remove', async (batch) => {
    const { claimed, pending } = await deps.store.claimRemovals(batch.map((m) => m.itemId!), ndr, deps.clock.now());
    deps.claims.hold(claimed);
    for (const item of claimed) await removeItem(deps, item, ndr);
    result.Removed += claimed.length;
    result.PendingRemove += pending.length;
    return claimed.length + pending.length;
  });
  return result;
}

/** Removals that a crash interrupted are carried out at start. */
export async function finishPendingRemovals(deps: MessageDeps): Promise<void> {
  for (;;) {
    const items = await deps.store.claimPendingRemovals(BATCH, deps.clock.now());
    if (items.length === 0) return;
    deps.claims.hold(items);
    for (const item of items) await removeItem(deps, item, item.pendingAction === 'remove-ndr');
  }
}

/** The envelope line of the replay format (IN-8): `X-Receiver: <address> NOTIFY=... ORCPT=...`. */
function receiverLine(recipient: ListedMessage['recipients'][number]): string {
  const parameters = [
    ...(recipient.notify ? [`NOTIFY=${recipient.notify.join(',')}`] : []),
    ...(recipient.orcpt ? [`ORCPT=${recipient.orcpt}`] : []),
  ];
  return `X-Receiver: <${recipient.address}>${parameters.map((p) => ` ${p}`).join('')}\r\n`;
}

/**
 * One message as an .eml file in the replay format: X-Sender and X-Receiver envelope headers (the recipients
 * still to deliver), then the message as received with our Received: header. The message stays queued.
 */
export async function exportMessage(deps: MessageDeps, identity: string): Promise<{ filename: string; content: AsyncIterable<Buffer> }> {
  const found = await mustExist(deps, { identity }, conditionsFor(deps, { identity }, true));
  const stored = await deps.store.getMessage(found[0]!.id);
  if (!stored) throw notFound(`no message ${identity}`);
  const seen = new Set<string>();
  const recipients = found.flatMap((m) => m.recipients).filter((r) => r.status === 'Ready' && !seen.has(r.address) && seen.add(r.address));
  const envelope = [
    `X-Sender: <${stored.mailFrom}>${stored.dsnRet ? ` RET=${stored.dsnRet}` : ''}${stored.dsnEnvid ? ` ENVID=${stored.dsnEnvid}` : ''}\r\n`,
    ...recipients.map(receiverLine),
  ].join('');
  const { store } = deps;
  return {
    filename: `${stored.id}.eml`,
    content: (async function* () {
      yield Buffer.from(envelope);
      yield stored.traceHeader;
      yield* store.readBody(stored.id);
    })(),
  };
}

/**
 * The message as stored (Postfix's `postcat -q`): our Received: header, then the message exactly as received;
 * with `headersOnly`, up to the blank line that ends the header section (which is included).
 */
export async function messageContent(deps: MessageDeps, identity: string, headersOnly: boolean): Promise<AsyncIterable<Buffer>> {
  const found = await mustExist(deps, { identity }, conditionsFor(deps, { identity }, true));
  const stored = await deps.store.getMessage(found[0]!.id);
  if (!stored) throw notFound(`no message ${identity}`);
  const { store } = deps;
  const whole = (async function* () {
    yield Buffer.from(stored.traceHeader);
    yield* store.readBody(stored.id);
  })();
  return headersOnly ? headerSection(whole) : whole;
}

/** The octets up to and including the first empty line (CRLF CRLF); all of them if there is none. */
async function* headerSection(content: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  // the last 3 octets seen, so that a CRLF CRLF split across chunks is found
  let tail = Buffer.alloc(0);
  for await (const chunk of content) {
    const window = Buffer.concat([tail, chunk]);
    const end = window.indexOf('\r\n\r\n');
    if (end !== -1) {
      yield chunk.subarray(0, end + 4 - tail.length);
      return;
    }
    yield chunk;
    tail = window.subarray(-3);
  }
}
