// How the nodes of one PostgreSQL queue wake each other (LISTEN/NOTIFY): a
// store operation that makes work for others (mail accepted or handed back to
// Submission, items routed, released, taken back or due, a queue's state
// changed) publishes an event on the schema's channel, and every other node's
// store hands it to its subscribers. Events published in one turn of the event
// loop go out together, in one statement, after the writes they describe have
// committed. A node's own events are not handed back to it.
//
// NOTIFY is a wake-up, not a log: one lost while a node's listening connection
// was down is made up for by a `resync` event when it is back (the engine then
// looks at everything again), and by each node's periodic sweep.
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Clock, TimerHandle } from '../../clock.js';
import type { StoreEvent } from '../types.js';
import { clientConfig, type ConnectionOptions } from './connection.js';

/** The first wait before a lost listening connection is opened again; it doubles up to MAX_RECONNECT_MS. */
const FIRST_RECONNECT_MS = 250;
const MAX_RECONNECT_MS = 5_000;
/** NOTIFY payloads are limited to 8000 bytes; a longer list of queues is split. */
const MAX_PAYLOAD = 7_000;

/** The channel of a schema: LISTEN/NOTIFY are per database, so every schema needs its own. */
export function channelOf(schema: string | undefined): string {
  const name = `sluice_${schema ?? 'public'}`;
  return name.length <= 63 ? name : `sluice_${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

interface Envelope {
  /** The owner that published it. */
  o: string;
  e: StoreEvent;
}

export class EventChannel {
  private readonly channel: string;
  private readonly handlers: Array<(event: StoreEvent) => void> = [];
  private listener: pg.Client | undefined;
  private reconnect: TimerHandle | undefined;
  private backoff = FIRST_RECONNECT_MS;
  private closed = false;
  private outgoing: StoreEvent[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  /** The listening connection was lost (or never made) since the last one: events may have been missed. */
  private interrupted = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: ConnectionOptions & { clock: Clock; owner: string },
  ) {
    this.channel = channelOf(options.schema);
  }

  /** Publishes an event to the other nodes once the current turn of the event loop is over. */
  publish(event: StoreEvent): void {
    if (this.closed) return;
    if (event.kind === 'ready' && event.queues.length === 0) return;
    this.outgoing.push(event);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      // one statement at a time: notifications go out in the order the writes were made
      this.flushing = (this.flushing ?? Promise.resolve()).then(() => this.flush());
    });
  }

  private async flush(): Promise<void> {
    const events = coalesce(this.outgoing.splice(0));
    if (events.length === 0) return;
    const payloads = events.flatMap((e) => split(e)).map((e) => JSON.stringify({ o: this.options.owner, e } satisfies Envelope));
    try {
      await this.pool.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [this.channel, payloads]);
    } catch {
      // the database is not reachable: the others find the work by their sweep, or at their resync
    }
  }

  /** Starts listening (once) and hands every other node's event to `handler`. */
  subscribe(handler: (event: StoreEvent) => void): void {
    this.handlers.push(handler);
    if (!this.listener && !this.reconnect) void this.listen();
  }

  private dispatch(event: StoreEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ ...clientConfig(this.options), keepAlive: true });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => undefined);
      this.retry();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (message) => {
      if (message.channel !== this.channel || !message.payload) return;
      let envelope: Envelope;
      try {
        envelope = JSON.parse(message.payload) as Envelope;
      } catch {
        return;
      }
      if (envelope.o !== this.options.owner) this.dispatch(envelope.e);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch {
      onLost();
      return;
    }
    if (this.closed || lost) {
      await client.end().catch(() => undefined);
      return;
    }
    const missed = this.interrupted;
    this.interrupted = false;
    this.backoff = FIRST_RECONNECT_MS;
    this.listener = client;
    // whatever was published while this node was not listening is looked at again
    if (missed) this.dispatch({ kind: 'resync' });
  }

  private retry(): void {
    this.interrupted = true;
    if (this.closed || this.reconnect) return;
    const wait = this.backoff;
    this.backoff = Math.min(MAX_RECONNECT_MS, this.backoff * 2);
    this.reconnect = this.options.clock.setTimer(wait, () => {
      this.reconnect = undefined;
      void this.listen();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reconnect?.cancel();
    this.reconnect = undefined;
    await this.flushing;
    const client = this.listener;
    this.listener = undefined;
    await client?.end().catch(() => undefined);
  }
}

/** One `submitted`, one `resync`, the ready queues merged, the last word on each queue's state. */
function coalesce(events: StoreEvent[]): StoreEvent[] {
  const out: StoreEvent[] = [];
  const ready = new Map<string, { name: string; route: string }>();
  let submitted = false;
  for (const event of events) {
    if (event.kind === 'ready') for (const q of event.queues) ready.set(q.name, q);
    else if (event.kind === 'submitted') submitted = true;
    else out.push(event);
  }
  if (submitted) out.unshift({ kind: 'submitted' });
  if (ready.size > 0) out.push({ kind: 'ready', queues: [...ready.values()] });
  return out;
}

function split(event: StoreEvent): StoreEvent[] {
  if (event.kind !== 'ready' || JSON.stringify(event).length <= MAX_PAYLOAD) return [event];
  const half = Math.ceil(event.queues.length / 2);
  return [...split({ kind: 'ready', queues: event.queues.slice(0, half) }), ...split({ kind: 'ready', queues: event.queues.slice(half) })];
}
