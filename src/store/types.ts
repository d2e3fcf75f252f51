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
export type MessageStatus = 'Ready';

export interface StoredRecipient extends NewRecipient {
  status: RecipientStatus;
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
  close(): Promise<void>;
}

export const SUBMISSION_QUEUE = 'Submission';
