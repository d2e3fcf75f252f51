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
  /**
   * Bytes the store's files hold for reuse (SQLite: free pages of a database file that never shrinks); they count
   * as free disk for the storage limits. Absent where the store is not on the local disk.
   */
  reusableBytes?: number;
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
  /** The claim token claimSubmission handed out with the message: the decision is fenced on it. */
  claim: number;
  items: RoutedItemInput[];
  failures: RecipientFailure[];
}

/** An operator's action asked for while the item was being delivered, applied when the attempt ends (MG-3). */
export type PendingAction = 'suspend' | 'remove' | 'remove-ndr';

/**
 * A lease on a claimed routed item (ST-5): the fencing token of the claim that handed it out. Every write about
 * the item carries it; a write whose token is no longer the item's (the lease expired and the item was taken
 * back, perhaps by another node) is refused and changes nothing.
 */
export interface ClaimRef {
  itemId: number;
  claim: number;
}

/** What beginAttempt found: go ahead, the lease is lost, or an operator acted since the claim (MG-3). */
export type AttemptStart = 'go' | 'lost' | PendingAction;

/** A routed item handed to delivery, with its message's envelope. */
export interface DeliveryItem extends ClaimRef {
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
  /** Since when the queue has delivered nothing (DL-7 maxIdleTimeBeforeResubmit counts from here). */
  idleSince: number;
}

export type FilterOperator = '-eq' | '-ne' | '-gt' | '-ge' | '-lt' | '-le' | '-like' | '-notlike';

/**
 * A filter (MG-1) resolved to columns of a list and values of each column's type, as a tree of comparisons
 * joined by and/or/not. Backends render conditions as parameterised queries; values never become query text.
 * A comparison that meets a missing value (NULL) is false, and `not` of it is true (two-valued logic), so
 * `-not (LastError -like "*x*")` finds the messages without a LastError too. listMessages takes the columns
 * id, queue, status, received_at, expires_at, mail_from, internet_message_id, last_error, source_name,
 * source_ip, attempts, size and subject, and `recipients`: true when any recipient of the entry matches
 * (-eq and -like only).
 */
export type Condition = ColumnCondition | { op: 'and' | 'or'; of: Condition[] } | { op: 'not'; of: Condition };

/** One comparison of a column with a value. */
export interface ColumnCondition {
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
  /** Its place in the list order (then itemId, no item first): the key for keyset paging. */
  seq?: number;
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
  /**
   * Makes the message durable (fsync'd) in the Submission queue. `clearsDelayNoticeOf`: this message is the
   * delay notice (DL-6) of these routed items; their notice is marked sent in the same transaction.
   */
  commit(message: NewMessage, effects?: { clearsDelayNoticeOf?: number[] }): Promise<StoredMessage>;
  /** Drops everything written so far. */
  abort(): Promise<void>;
}

/**
 * Every claim (a message taken by the categorizer, a routed item taken for delivery, expiry or removal) is a
 * lease (ST-5): held by this store's owner until `now + leaseTimeout`, renewed by renewLeases while the work
 * runs, fenced by its claim token, and taken back by reclaimExpiredLeases once it expires. A claim is handed
 * out by one atomic statement per batch (a PostgreSQL backend: `FOR UPDATE SKIP LOCKED`), so several
 * processes or nodes can share one queue.
 */
export interface QueueStore {
  /** Who this store's claims belong to: node name and process. */
  readonly owner: string;
  /** How long a claim lasts unless renewed. */
  readonly leaseTimeout: number;
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
   * The oldest messages waiting in Submission, leased so no one else takes them, with the recipients still
   * to route and the claim token. A message that was in hand at a crash comes alone, so that a poison message
   * takes no other with it.
   */
  claimSubmission(limit: number, now: number): Promise<Array<{ message: StoredMessage; positions: number[]; claim: number }>>;
  /** Moves claimed messages into their routed items; failures are final at once. A decision whose claim was lost is skipped. */
  routeMessages(decisions: RoutingDecision[]): Promise<void>;
  /** Hands claimed messages back to Submission untouched (the categorizer run failed). */
  releaseSubmission(claims: Array<{ messageId: string; claim: number }>): Promise<void>;

  // delivery (QU-5, DL-1, DL-2, ST-5)
  /**
   * The oldest ready items of one queue (FIFO), leased. Nothing while the queue is suspended (MG-2) or in
   * Retry until its retry time (DL-3): the claim itself enforces the queue state.
   */
  claimDeliveries(queue: string, limit: number, now: number): Promise<DeliveryItem[]>;
  /**
   * The attempt on a claimed item starts now: from here a crash counts against the message (QU-6). Returns
   * what an operator asked for since the claim instead (the caller releases the item), or 'lost'.
   */
  beginAttempt(ref: ClaimRef, now: number): Promise<AttemptStart>;
  /**
   * Records one attempt. Deferred recipients wait until `retryAt`; a message with nothing left leaves the store.
   * When recipients remain and an operator acted during the attempt, returns that action: a suspend is applied
   * here; a removal is left to the caller (the item stays claimed for it). 'lost': fenced out, nothing written.
   */
  recordDelivery(ref: ClaimRef, outcomes: RecipientOutcome[], retryAt: number, now: number): Promise<PendingAction | null | 'lost'>;
  /**
   * Puts claimed items back, untouched and first in line (the attempt did not happen). A pending suspend is
   * applied; items an operator removed meanwhile are returned, still claimed, for the caller to remove. Items
   * whose lease was lost are left alone.
   */
  releaseDeliveries(refs: ClaimRef[]): Promise<DeliveryItem[]>;
  /** Extends these leases to now + leaseTimeout; returns the ones that were lost (fenced out). */
  renewLeases(refs: ClaimRef[], now: number): Promise<ClaimRef[]>;
  /**
   * Claims whose lease expired (their holder died or lost track of them) are taken back: messages return to
   * Submission and items to Ready, an attempt that had begun counting as a crash (QU-6, Poison at the
   * threshold); a pending suspend is applied. Returns the delivery queues that got ready items back.
   */
  reclaimExpiredLeases(now: number): Promise<QueueRef[]>;
  /** When the earliest lease (of any holder) expires, if any claim is out. */
  nextLeaseExpiry(): Promise<number | null>;
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
  /** Items past their expiry, not claimed, leased (then recorded as failed). */
  claimExpired(now: number, limit: number): Promise<DeliveryItem[]>;
  /** Items whose delay notice is due, after `afterItemId` in item order (read only: the notice's commit clears it). */
  dueDelayNotices(now: number, limit: number, afterItemId: number): Promise<DeliveryItem[]>;
  /** Marks delay notices as sent without a report (NOTIFY or the policy wanted none). */
  clearDelayNotices(itemIds: number[]): Promise<void>;
  /** The earliest expiry of an unclaimed item or delay-notice time, if any. */
  nextDeadline(): Promise<number | null>;

  // operator actions (MG-2, MG-3, IN-7)
  /** Matching messages, one per queue they are in, in receipt order. */
  listMessages(conditions: Condition[], limit: number): Promise<ListedMessage[]>;
  /** Suspends routed items; claimed ones become PendingSuspend. Returns the ids of each kind. */
  suspendItems(itemIds: number[]): Promise<{ suspended: number[]; pending: number[] }>;
  /**
   * Resumes suspended items (and cancels PendingSuspend); returns the queues that got ready items. Items in
   * Poison go back to Submission instead (`resubmitted`).
   */
  resumeItems(itemIds: number[]): Promise<{ resumed: number; queues: QueueRef[]; resubmitted: number }>;
  /** Claims routed items for removal (then recorded as failed); claimed ones become PendingRemove (their ids are returned). */
  claimRemovals(itemIds: number[], ndr: boolean, now: number): Promise<{ claimed: DeliveryItem[]; pending: number[] }>;
  /** Claims unclaimed items whose removal was asked for while they were claimed (an attempt, a crash). */
  claimPendingRemovals(limit: number, now: number): Promise<DeliveryItem[]>;
  setQueueSuspended(queue: string, suspended: boolean): Promise<boolean>;
  /** Records a queue's Retry state (DL-3), or its end (null). */
  setQueueRetry(queue: string, retry: QueueRetry | null): Promise<void>;
  /** Makes a queue's deferred items ready now; returns how many. */
  retryQueue(queue: string): Promise<number>;
  suspendedListeners(): Promise<string[]>;
  setListenerSuspended(name: string, suspended: boolean): Promise<void>;

  // a store several nodes share (PostgreSQL); a store of one node has none of these
  /** Several nodes work on this store: what one does, the others see (events, slots, identities). */
  readonly shared?: boolean;
  /** Hands every other node's events (new work, queue state changes) to `handler`. */
  subscribe?(handler: (event: StoreEvent) => void): void;
  /**
   * One of a queue's `max` connection slots, leased to this node until released (renewed meanwhile), so a
   * route's maxConnections holds for the whole cluster; null when all are taken.
   */
  acquireConnectionSlot?(queue: string, max: number, now: number): Promise<number | null>;
  releaseConnectionSlot?(queue: string, slot: number): Promise<void>;
}

/** What another node of a shared store did that this node may have to act on. */
export type StoreEvent =
  /** Messages wait in Submission (accepted, handed back, taken back, resubmitted). */
  | { kind: 'submitted' }
  /** These delivery queues got ready items (routed, released, taken back, due, resumed). */
  | { kind: 'ready'; queues: QueueRef[] }
  /** A queue's state changed: the fields given are its new state. */
  | { kind: 'queue'; queue: string; route: string | null; suspended?: boolean; retry?: QueueRetry | null }
  /** Events may have been missed (the connection that receives them was lost): look at everything again. */
  | { kind: 'resync' };

export const SUBMISSION_QUEUE = 'Submission';
export const UNREACHABLE_QUEUE = 'Unreachable';
/** QU-6: messages that were in hand at too many crashes; suspended until an operator acts. */
export const POISON_QUEUE = 'Poison';
