// The message tracking log (MG-5): one JSON line per event in a message's life,
// deferred attempts included with their reason, in daily files under
// log.tracking.dir (kept log.tracking.retainDays days), written asynchronously
// so the hot path never waits for it. Searched by message-id, sender, recipient or queue id, as
// Exchange's message tracking or a Postfix maillog grep would be.
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Clock } from '../clock.js';
import { wildcardPattern as pattern } from '../management/filter.js';
import type { Logger } from './logger.js';

export type TrackingEventName = 'received' | 'routed' | 'deferred' | 'delivered' | 'failed' | 'dsn' | 'suspended' | 'resumed' | 'removed';

export interface TrackingEvent {
  event: TrackingEventName;
  /** Sluice's id of the message. */
  queueId: string;
  /** Its Message-ID header, when it has one. */
  messageId?: string;
  sender: string;
  recipients: string[];
  /** What else the event knows: queue, reply, remote MTA, size, source... */
  [detail: string]: unknown;
}

export type TrackedEvent = TrackingEvent & { time: string };

export interface TrackingQuery {
  messageId?: string;
  sender?: string;
  recipient?: string;
  queueId?: string;
}

export interface TrackingLog {
  record(event: TrackingEvent): void;
  /** Matching events, oldest first, at most `limit`. */
  search(query: TrackingQuery, limit: number): Promise<{ events: TrackedEvent[]; truncated: boolean }>;
  close(): Promise<void>;
}

const FILE = /^tracking-(\d{4}-\d{2}-\d{2})\.jsonl$/;

const bare = (messageId: string) => messageId.trim().replace(/^<|>$/g, '');

function matcher(query: TrackingQuery): (event: TrackedEvent) => boolean {
  const tests: Array<(event: TrackedEvent) => boolean> = [];
  if (query.messageId) {
    const wanted = pattern(bare(query.messageId));
    tests.push((e) => e.messageId !== undefined && wanted.test(bare(e.messageId)));
  }
  if (query.sender !== undefined) {
    const wanted = pattern(query.sender);
    tests.push((e) => wanted.test(e.sender));
  }
  if (query.recipient) {
    const wanted = pattern(query.recipient);
    tests.push((e) => e.recipients.some((r) => wanted.test(r)));
  }
  if (query.queueId) tests.push((e) => e.queueId === query.queueId);
  return (event) => tests.every((test) => test(event));
}

const DAY_MS = 24 * 3600 * 1000;
export const DEFAULT_RETAIN_DAYS = 30;

/** The days of log.tracking: `retainDays`, else the older `maxAge` rounded up to days, else 30. */
export function retainDaysOf(tracking: { retainDays?: number | undefined; maxAge?: number | undefined }): number {
  if (tracking.retainDays !== undefined) return tracking.retainDays;
  if (tracking.maxAge !== undefined) return Math.max(1, Math.ceil(tracking.maxAge / DAY_MS));
  return DEFAULT_RETAIN_DAYS;
}

/**
 * Opens the tracking log in `dir`. `retainDays` daily files are kept, today's included (2: today and yesterday);
 * older ones are deleted at the opening and at each change of day.
 */
export async function openTrackingLog(options: { dir: string; retainDays: number; clock: Clock; logger: Logger }): Promise<TrackingLog> {
  const { dir, clock } = options;
  await mkdir(dir, { recursive: true });
  let day = '';
  let stream: WriteStream | undefined;
  /** Settles once every line recorded so far is written (writes complete in order). */
  let written = Promise.resolve();
  /** Lines of this turn of the event loop, written together at its end: one write call for many events. */
  let batch: string[] = [];

  async function prune(today: string): Promise<void> {
    const oldest = new Date(Date.parse(today) - (options.retainDays - 1) * DAY_MS).toISOString().slice(0, 10);
    for (const name of await readdir(dir)) {
      const date = FILE.exec(name)?.[1];
      if (date && date < oldest) await unlink(join(dir, name)).catch(() => undefined);
    }
  }

  function fileFor(now: number): WriteStream {
    const today = new Date(now).toISOString().slice(0, 10);
    if (today !== day || !stream) {
      stream?.end();
      day = today;
      stream = createWriteStream(join(dir, `tracking-${today}.jsonl`), { flags: 'a' });
      // a tracking log that cannot be written must not take the relay down with it
      stream.on('error', (error) => options.logger.error({ err: error, dir }, 'tracking log write failed'));
      void prune(today).catch(() => undefined);
    }
    return stream;
  }

  await prune(new Date(clock.now()).toISOString().slice(0, 10)).catch(() => undefined);

  return {
    record(event) {
      if (batch.length === 0) {
        written = new Promise((resolve) =>
          setImmediate(() => {
            const lines = batch.join('');
            batch = [];
            fileFor(clock.now()).write(lines, () => resolve());
          }),
        );
      }
      batch.push(`${JSON.stringify({ time: new Date(clock.now()).toISOString(), ...event })}\n`);
    },
    async search(query, limit) {
      await written;
      const matches = matcher(query);
      const events: TrackedEvent[] = [];
      const files = (await readdir(dir)).filter((name) => FILE.test(name)).sort();
      for (const name of files) {
        const lines = createInterface({ input: createReadStream(join(dir, name)), crlfDelay: Infinity });
        for await (const line of lines) {
          if (line === '') continue;
          let event: TrackedEvent;
          try {
            event = JSON.parse(line) as TrackedEvent;
          } catch {
            continue; // a line cut short by a crash
          }
          if (!matches(event)) continue;
          if (events.length === limit) {
            lines.close();
            return { events, truncated: true };
          }
          events.push(event);
        }
      }
      return { events, truncated: false };
    },
    async close() {
      await written;
      await new Promise<void>((resolve) => (stream ? stream.end(resolve) : resolve()));
    },
  };
}

