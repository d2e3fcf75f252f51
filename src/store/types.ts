// The QueueStore interface (ST-1): the only view of storage the rest of Sluice
// has. Backends (sqlite/ now, postgres/ later) implement it; nothing above the
// store knows which one runs.

/** RFC 3461 NOTIFY values as given at RCPT (absent means the MTA default). */
export type NotifyFlag = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface NewRecipient {
  address: string;
  /** RFC 3461 ORCPT, as given (`rfc822;user@example.com`). */
  orcpt?: string;
  notify?: NotifyFlag[];
}

/** Everything intake knows about a message when its body is complete. */
export interface NewMessage {
  mailFrom: string; // '' is the null sender <>
  recipients: NewRecipient[];
  receivedAt: number; // ms since epoch, from the clock
  bodyType?: '7BIT' | '8BITMIME';
  smtpUtf8: boolean;
  dsnRet?: 'FULL' | 'HDRS';
  dsnEnvid?: string;
  sourceIp: string;
  /** Listener (or pickup) name: QU-3 MessageSourceName. */
  sourceName: string;
  heloName?: string;
  authUser?: string;
  internetMessageId?: string;
  subject?: string;
  /** Our Received: header, kept apart so the body stays byte-identical to what the client sent. */
  traceHeader: Buffer;
}

export type RecipientStatus = 'Ready' | 'Delivered' | 'Failed';
/** Ready: waiting; Active: being categorized or delivered right now. */
export type MessageStatus = 'Ready' | 'Active';

export interface StoredRecipient extends NewRecipient {
  status: RecipientStatus;
  /** The last reply or error about this recipient. */
  lastReply?: string;
  /** The next hop that gave it. */
  remoteMta?: string;
  lastAttemptAt?: number;
}

export interface StoredMessage extends Omit<NewMessage, 'recipients' | 'traceHeader'> {
  id: string;
  queue: string;
  status: MessageStatus;
  /** Body octets as received (without our Received: header). */
  size: number;
  recipients: StoredRecipient[];
  traceHeader: Buffer;
}

export interface StoreStats {
  messages: number;
  bodyBytes: number;
  /** Write transactions committed since the store opened. */
  transactions: number;
  /** Of those, how many were fsync'd (group commit: many messages share one). */
  syncedTransactions: number;
  messagesCommitted: number;
}

/** QU-2 DeliveryType. */
export type DeliveryType = 'SmartHostConnectorDelivery' | 'DnsConnectorDelivery' | 'Unreachable';

/** Where the categorizer sends some recipients of a message: one routed item per next hop (QU-4). */
export interface RoutedItemInput {
  /** Next hop: a domain (MX routes), a route name (smart hosts), or Unreachable. */
  queue: string;
  deliveryType: DeliveryType;
  route: string | null;
  /** Positions of the message's recipients that this item carries. */
  recipients: number[];
  /** Set for Unreachable: why there is no route. */
  lastError?: string;
  /** When its recipients expire (DL-5). */
  expiresAt: number;
  /** When a delay notice is due (DL-6), if one may be sent. */
  delayAt: number | null;
}

/** Recipients that fail at categorization (e.g. too big for the route): final at once. */
export interface RecipientFailure {
  position: number;
  reply: string;
}

/** What the categorizer decided for one message. */
export interface RoutingDecision {
  messageId: string;
  items: RoutedItemInput[];
  failures: RecipientFailure[];
}

/** An operator's action asked for while the item was being delivered, applied when the attempt ends (MG-3). */
export type PendingAction = 'suspend' | 'remove' | 'remove-ndr';

/** A routed item handed to delivery, with its message's envelope. */
export interface DeliveryItem {
  itemId: number;
  queue: string;
  attempts: number;
  expiresAt: number | null;
  lastError: string | null;
  pendingAction: PendingAction | null;
  message: StoredMessage;
  /** The whole body, when it is small enough to come along (saves a read); else read it with readBody. */
  body?: Buffer;
  /** The recipients this item still has to deliver. */
  recipients: Array<StoredRecipient & { position: number }>;
}

export interface RecipientOutcome {
  position: number;
  result: 'delivered' | 'failed' | 'deferred';
  reply: string;
  remoteMta?: string;
}

/** A delivery queue and the route that feeds it. */
export interface QueueRef {
  name: string;
  route: string;
}

export interface QueueRecord {
  /** The next hop part of the identity `<node>/<nexthop>`. */
  name: string;
  deliveryType: DeliveryType | 'Undefined';
  route: string | null;
  messageCount: number;
  /** Suspended by an operator (MG-2); kept across restarts. */
  suspended: boolean;
  /** In Retry since its next hop could not be reached (DL-3); kept across restarts. */
  retry: QueueRetry | null;
}

export interface QueueRetry {
  /** When the next connection attempt is due. */
  at: number;
  /** When the last one failed. */
  since: number;
  /** Failed attempts in a row (the DL-3 schedule goes on from here). */
  failures: number;
  lastError: string;
}

export type FilterOperator = '-eq' | '-ne' | '-gt' | '-ge' | '-lt' | '-le' | '-like';

/**
 * One comparison of a filter (MG-1), resolved to a column of a list and a value
 * of that column's type. Backends render conditions as parameterised queries;
 * values never become query text. listMessages takes the columns id, queue,
 * status, received_at, expires_at, mail_from, internet_message_id, last_error,
 * source_name, source_ip, attempts, size and subject.
 */
export interface Condition {
  column: string;
  operator: FilterOperator;
  value: string | number;
  /** Text compares case-insensitively. */
  text: boolean;
}

/** QU-3 message status. */
export type ListedStatus = 'Active' | 'Ready' | 'Retry' | 'Suspended' | 'PendingSuspend' | 'PendingRemove';

/** One message in one queue as an operator lists it (QU-3); a message still in Submission has no routed item. */
export interface ListedMessage {
  itemId: number | null;
  id: string;
  queue: string;
  status: ListedStatus;
  receivedAt: number;
  expiresAt: number | null;
  mailFrom: string;
  internetMessageId: string | null;
  lastError: string | null;
  sourceName: string;
  sourceIp: string;
  attempts: number;
  size: number;
  subject: string | null;
  /** The recipients this queue carries (all of them in Submission), with their own status. */
  recipients: StoredRecipient[];
}

/** A body being received; invisible to every reader until commit() resolves. */
export interface MessageWriter {
  readonly id: string;
  /** Appends body bytes. Resolves when the writer can take more (back-pressure). */
  write(chunk: Buffer): Promise<void>;
  /** Makes the message durable (fsync'd) in the Submission queue. */
  commit(message: NewMessage): Promise<StoredMessage>;
  /** Drops everything written so far. */
  abort(): Promise<void>;
}

export interface QueueStore {
  receive(): MessageWriter;
  getMessage(id: string): Promise<StoredMessage | undefined>;
  /** The body exactly as received, in order, without our trace header. */
  readBody(id: string): AsyncIterable<Buffer>;
  /** Messages of one queue in receipt order (FIFO), a page at a time. */
  listQueue(queue: string, page: { after?: string; limit: number }): Promise<StoredMessage[]>;
  stats(): Promise<StoreStats>;
  /** Requests sent to the store and not yet answered (a gauge of its backlog). */
  pendingOperations(): number;
  close(): Promise<void>;

  // categorizer (RT-1, RT-2, QU-4)
  /**
   * The oldest messages waiting in Submission, marked Active so no one else takes them, with the recipients still
   * to route. A message that was in hand at a crash comes alone, so that a poison message takes no other with it.
   */
  claimSubmission(limit: number): Promise<Array<{ message: StoredMessage; positions: number[] }>>;
  /** Moves claimed messages into their routed items; failures are final at once. */
  routeMessages(decisions: RoutingDecision[]): Promise<void>;

  // delivery (QU-5, DL-1, DL-2)
  /** The oldest ready items of one queue (FIFO), marked Active. */
  claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]>;
  /** The attempt on a claimed item starts now: a crash from here on counts against the message (QU-6). */
  beginAttempt(itemId: number): Promise<void>;
  /**
   * Records one attempt. Deferred recipients wait until `retryAt`; a message with nothing left leaves the store.
   * When recipients remain and an operator acted during the attempt, returns that action: a suspend is applied
   * here; a removal is left to the caller (the item stays claimed for it).
   */
  recordDelivery(itemId: number, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null>;
  /**
   * Puts claimed items back, untouched and first in line (the attempt did not happen). A pending suspend is
   * applied; items an operator removed meanwhile are returned, still claimed, for the caller to remove.
   */
  releaseDeliveries(itemIds: number[]): Promise<DeliveryItem[]>;
  /** Deferred items whose time has come become ready; returns the queues that got some. */
  promoteDue(now: number): Promise<QueueRef[]>;
  /** When the next deferred item falls due, if any. */
  nextDueTime(): Promise<number | null>;
  listQueues(): Promise<QueueRecord[]>;
  /** Sends a queue's waiting messages back to Submission for the categorizer (DL-7); returns how many. */
  resubmitQueue(queue: string): Promise<number>;
  /** Forgets a delivery queue that has no messages left (QU-1: removed after it empties). */
  dropQueueIfEmpty(queue: string): Promise<boolean>;

  // deadlines (DL-5, DL-6)
  /** Items past their expiry, not being delivered, marked Active (then recorded as failed). */
  claimExpired(now: number, limit: number): Promise<DeliveryItem[]>;
  /** Items whose delay notice is due; each is handed out once. */
  takeDelayNotices(now: number, limit: number): Promise<DeliveryItem[]>;
  /** The earliest expiry or delay-notice time, if any. */
  nextDeadline(): Promise<number | null>;

  // operator actions (MG-2, MG-3, IN-7)
  /** Matching messages, one per queue they are in, in receipt order. */
  listMessages(conditions: Condition[], limit: number): Promise<ListedMessage[]>;
  /** Suspends routed items; those being delivered become PendingSuspend. Returns the ids of each kind. */
  suspendItems(itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }>;
  /**
   * Resumes suspended items (and cancels PendingSuspend); returns the queues that got ready items. Items in
   * Poison go back to Submission instead (`resubmitted`).
   */
  resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }>;
  /** Claims routed items for removal (then recorded as failed); those being delivered become PendingRemove (their ids are returned). */
  claimRemovals(itemIds: number[], ndr: boolean): Promise<{ claimed: DeliveryItem[]; pending: number[] }>;
  /** Claims items whose removal was asked for during an attempt that a crash cut short. */
  claimPendingRemovals(limit: number): Promise<DeliveryItem[]>;
  setQueueSuspended(queue: string, suspended: boolean): Promise<boolean>;
  /** Records a queue's Retry state (DL-3), or its end (null). */
  setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void>;
  /** Makes a queue's deferred items ready now; returns how many. */
  retryQueue(queue: string): Promise<number>;
  suspendedListeners(): Promise<string[]>;
  setListenerSuspended(name: string, suspended: boolean): Promise<void>;
}

export const SUBMISSION_QUEUE = 'Submission';
export const UNREACHABLE_QUEUE = 'Unreachable';
/** QU-6: messages that were in hand at too many crashes; suspended until an operator acts. */
export const POISON_QUEUE = 'Poison';
