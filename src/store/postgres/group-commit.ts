// Acceptances (IN-2, ST-2): every commit() that arrives while a transaction is
// being committed waits for the next one, and that one takes them all, so a
// hundred sessions finishing together cost one COMMIT, not a hundred, and
// PostgreSQL's commit rate is not the limit. A batch is one transaction with
// synchronous_commit on: COMMIT returns once the WAL is flushed (on a
// synchronous standby too, when the DBA set one up), and only then is any
// commit() of the batch resolved, so no 250 goes out before it.
// The envelope, its recipients and the body's last chunk (for most mail, the
// whole body) are written by that transaction. Earlier chunks of a large body
// are written while it arrives, by asynchronous commits: their WAL records
// come before the batch's commit record, and the flush that makes the batch
// durable makes them durable too, so one durable COMMIT covers the message.
import pg from 'pg';
import { SUBMISSION_QUEUE, type NewMessage, type StoredMessage } from '../types.js';
import { clientConfig, ignoreErrors, type ConnectionOptions } from './connection.js';

/** Messages in one transaction at most. */
const MAX_BATCH = 256;

export interface Acceptance {
  id: string;
  /** The body's last chunk and its number, if there is one left to write. */
  last: { seq: number; data: Buffer } | null;
  size: number;
  message: NewMessage;
  clearsDelayNoticeOf: number[];
}

export interface CommitCounters {
  transactions: number;
  messagesCommitted: number;
}

interface Waiting extends Acceptance {
  resolve(message: StoredMessage): void;
  reject(error: Error): void;
}

// the envelopes travel as one JSON array, keyed as NewMessage keys them
const INSERT_MESSAGES = `
  WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(ord integer, id text, size bigint, "receivedAt" bigint, "mailFrom" text,
      "bodyType" text, "smtpUtf8" boolean, "dsnRet" text, "dsnEnvid" text, "sourceIp" text, "sourceName" text, "heloName" text,
      "authUser" text, "internetMessageId" text, subject text, "traceHeader" text, recipients jsonb)
  ), inserted AS (
    INSERT INTO messages (id, queue, status, received_at, mail_from, size, body_type, smtp_utf8, dsn_ret, dsn_envid,
      source_ip, source_name, helo_name, auth_user, internet_message_id, subject, trace_header)
    SELECT id, '${SUBMISSION_QUEUE}', 'Ready', "receivedAt", "mailFrom", size, "bodyType", "smtpUtf8"::integer, "dsnRet", "dsnEnvid",
      "sourceIp", "sourceName", "heloName", "authUser", "internetMessageId", subject, decode("traceHeader", 'base64')
    FROM input ORDER BY ord
    RETURNING seq, id
  )
  INSERT INTO recipients (message_seq, position, address, orcpt, notify, status)
  SELECT inserted.seq, r.n - 1, r.value->>'address', r.value->>'orcpt', 
    CASE WHEN r.value ? 'notify' THEN array_to_string(ARRAY(SELECT jsonb_array_elements_text(r.value->'notify')), ',') END, 'Ready'
  FROM inserted JOIN input USING (id) CROSS JOIN LATERAL jsonb_array_elements(input.recipients) WITH ORDINALITY AS r(value, n)`;

/** Absent fields stay out of the JSON, and so are NULL. */
const envelopes = (batch: Acceptance[]): string =>
  JSON.stringify(batch.map((a, ord) => ({ ...a.message, ord, id: a.id, size: a.size, traceHeader: Buffer.from(a.message.traceHeader).toString('base64') })));

const stored = (a: Acceptance): StoredMessage => ({
  ...a.message,
  id: a.id,
  queue: SUBMISSION_QUEUE,
  size: a.size,
  status: 'Ready',
  traceHeader: Buffer.from(a.message.traceHeader),
  recipients: a.message.recipients.map((r) => ({ ...r, status: 'Ready' })),
});

export class GroupCommitter {
  readonly counters: CommitCounters = { transactions: 0, messagesCommitted: 0 };
  private readonly pool: pg.Pool;
  private waiting: Waiting[] = [];
  private running: Promise<void> | undefined;

  constructor(options: ConnectionOptions) {
    // one connection: one transaction in flight, the next batch gathering behind it
    this.pool = new pg.Pool({ ...clientConfig(options), max: 1, idleTimeoutMillis: 30_000 });
    this.pool.on('error', () => undefined);
    // whatever the server's default, an acceptance waits for its WAL flush (a stricter setting is kept)
    this.pool.on('connect', (client) => {
      ignoreErrors(client);
      client.query("SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'").catch(() => undefined);
    });
  }

  get pending(): number {
    return this.waiting.length;
  }

  commit(acceptance: Acceptance): Promise<StoredMessage> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ ...acceptance, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      // a commit that came in after the last batch was taken, before this ran
      if (this.waiting.length > 0) this.kick();
    });
  }

  async close(): Promise<void> {
    await this.running;
    await this.pool.end();
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, MAX_BATCH);
      try {
        await this.write(batch);
        for (const a of batch) a.resolve(stored(a));
      } catch (error) {
        // one bad message must not fail the others: each is tried alone
        if (batch.length === 1) batch[0]!.reject(error as Error);
        else for (const a of batch) await this.write([a]).then(() => a.resolve(stored(a)), (e: Error) => a.reject(e));
      }
    }
  }

  private async write(batch: Acceptance[]): Promise<void> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      await client.query(INSERT_MESSAGES, [envelopes(batch)]);
      const last = batch.filter((a) => a.last !== null);
      if (last.length > 0) {
        await client.query('INSERT INTO body_chunks (message_id, seq, data) SELECT * FROM unnest($1::text[], $2::integer[], $3::bytea[])', [
          last.map((a) => a.id),
          last.map((a) => a.last!.seq),
          last.map((a) => a.last!.data),
        ]);
      }
      await client.query('DELETE FROM receiving WHERE message_id = ANY($1)', [batch.map((a) => a.id)]);
      // a delay notice (DL-6) is marked sent only with the notice itself: a crash loses both or neither
      const notices = batch.flatMap((a) => a.clearsDelayNoticeOf);
      if (notices.length > 0) await client.query('UPDATE items SET delay_at = NULL WHERE id = ANY($1)', [notices]);
      await client.query('COMMIT');
      this.counters.transactions++;
      this.counters.messagesCommitted += batch.length;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw error;
    } finally {
      client.release(broken);
    }
  }
}
