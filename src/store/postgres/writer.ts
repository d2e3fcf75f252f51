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

export function createPostgresWriter(sink: BodySink, id: string): MessageWriter {
  const pieces: Buffer[] = [];
  let pieceBytes = 0;
  let size = 0;
  let written = 0;
  let writing: Promise<void> = Promise.resolve();
  let done = false;
  const open = () => {
    if (done) throw new Error(`message ${id} was already committed or aborted`);
  };
  const gathered = (): Buffer | null => {
    if (pieceBytes === 0) return null;
    const data = Buffer.concat(pieces.splice(0), pieceBytes);
    pieceBytes = 0;
    return data;
  };

  return {
    id,
    async write(chunk: Buffer) {
      open();
      pieces.push(chunk);
      pieceBytes += chunk.length;
      size += chunk.length;
      if (pieceBytes < CHUNK_BYTES) return;
      await writing; // back-pressure: one chunk in flight
      const data = gathered()!;
      writing = sink.chunk(id, written++, data);
    },
    async commit(message: NewMessage, effects?: { clearsDelayNoticeOf?: number[] }) {
      open();
      done = true;
      await writing;
      const data = gathered();
      return sink.accept({ id, last: data ? { seq: written, data } : null, size, message, clearsDelayNoticeOf: effects?.clearsDelayNoticeOf ?? [] });
    },
    async abort() {
      open();
      done = true;
      pieces.length = 0;
      await writing.catch(() => undefined);
      if (written > 0) await sink.drop(id);
    },
  };
}
