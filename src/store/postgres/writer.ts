// A message body on its way into the PostgreSQL store: gathered into chunks of
// at least CHUNK_BYTES, at most one being written while the next fills (IN-3).
// The last chunk goes with the envelope in the acceptance transaction, so a
// body of one chunk (most mail) is written by that transaction alone.
import type { MessageWriter, NewMessage, StoredMessage } from '../types.js';
import type { Acceptance } from './group-commit.js';
import { CHUNK_BYTES } from './lifecycle.js';

export interface BodySink {
  chunk(id: string, seq: number, data: Buffer): Promise<void>;
  accept(acceptance: Acceptance): Promise<StoredMessage>;
  drop(id: string): Promise<void>;
}

export class PostgresWriter implements MessageWriter {
  private readonly gathering: Buffer[] = [];
  private gatheredBytes = 0;
  private size = 0;
  /** Chunks handed to the sink so far; the next one's number. */
  private chunks = 0;
  private lastChunk: Promise<void> = Promise.resolve();
  private finished = false;

  constructor(
    private readonly sink: BodySink,
    readonly id: string,
  ) {}

  async write(piece: Buffer): Promise<void> {
    this.stillOpen();
    this.gathering.push(piece);
    this.gatheredBytes += piece.length;
    this.size += piece.length;
    if (this.gatheredBytes < CHUNK_BYTES) return;
    await this.lastChunk; // back-pressure: one chunk in flight
    this.lastChunk = this.sink.chunk(this.id, this.chunks++, this.take()!);
    // its failure is met by the next write, the commit or the abort; a writer given up (a store closing) leaves none unhandled
    this.lastChunk.catch(() => undefined);
  }

  async commit(message: NewMessage, effects?: { clearsDelayNoticeOf?: number[] }): Promise<StoredMessage> {
    this.finish();
    await this.lastChunk;
    const data = this.take();
    const last = data ? { seq: this.chunks, data } : null;
    return this.sink.accept({ id: this.id, last, size: this.size, message, clearsDelayNoticeOf: effects?.clearsDelayNoticeOf ?? [] });
  }

  async abort(): Promise<void> {
    this.finish();
    this.gathering.length = 0;
    await this.lastChunk.catch(() => undefined);
    if (this.chunks > 0) await this.sink.drop(this.id);
  }

  private take(): Buffer | null {
    if (this.gatheredBytes === 0) return null;
    const data = Buffer.concat(this.gathering.splice(0), this.gatheredBytes);
    this.gatheredBytes = 0;
    return data;
  }

  private stillOpen(): void {
    if (this.finished) throw new Error(`message ${this.id} was already committed or aborted`);
  }

  private finish(): void {
    this.stillOpen();
    this.finished = true;
  }
}
