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

/** A routed item handed to delivery, with its message's envelope. */
export interface DeliveryItem {
  itemId: number;
  queue: string;
  attempts: number;
  expiresAt: number | null;
  lastError: string | null;
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
  /** The oldest messages waiting in Submission, marked Active so no one else takes them, with the recipients still to route. */
  claimSubmission(limit: number): Promise<Array<{ message: StoredMessage; positions: number[] }>>;
  /** Moves claimed messages into their routed items; failures are final at once. */
  routeMessages(decisions: RoutingDecision[]): Promise<void>;

  // delivery (QU-5, DL-1, DL-2)
  /** The oldest ready items of one queue (FIFO), marked Active. */
  claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]>;
  /** Records one attempt. Deferred recipients wait until `retryAt`; a message with nothing left leaves the store. */
  recordDelivery(itemId: number, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<void>;
  /** Puts claimed items back, untouched and first in line (the attempt did not happen). */
  releaseDeliveries(itemIds: number[]): Promise<void>;
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
}

export const SUBMISSION_QUEUE = 'Submission';
export const UNREACHABLE_QUEUE = 'Unreachable';
