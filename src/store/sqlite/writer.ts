// A message body on its way into the store: gathered into chunks, at most one
// in flight while the next fills, so no message is ever whole in memory (IN-3).
import { SUBMISSION_QUEUE, type MessageWriter, type NewMessage, type StoredMessage } from '../types.js';
import { StoreError, revive, type WorkerClient } from './client.js';
import { CHUNK_BYTES } from './protocol.js';

export function createWriter(client: WorkerClient, id: string): MessageWriter {
  let buffered: Buffer[] = [];
  let bufferedBytes = 0;
  let size = 0;
  let nextSeq = 0;
  let inFlight: Promise<unknown> = Promise.resolve();
  let finished = false;

  // a fresh buffer of its own (not a slice of Node's shared pool), so it can be transferred
  const take = (): Buffer | null => {
    if (bufferedBytes === 0) return null;
    const data = Buffer.alloc(bufferedBytes);
    let offset = 0;
    for (const piece of buffered) offset += piece.copy(data, offset);
    buffered = [];
    bufferedBytes = 0;
    return data;
  };
  const finish = () => {
    if (finished) throw new StoreError(`message ${id} was already committed or aborted`);
    finished = true;
  };

  return {
    id,
    write: async (chunk: Buffer) => {
      if (finished) throw new StoreError(`message ${id} was already committed or aborted`);
      buffered.push(chunk);
      bufferedBytes += chunk.length;
      size += chunk.length;
      if (bufferedBytes < CHUNK_BYTES) return;
      await inFlight;
      const data = take()!;
      inFlight = client.call({ op: 'chunk', id, seq: nextSeq++, data }, data);
    },
    commit: async (message: NewMessage, effects?: { clearsDelayNoticeOf?: number[] }): Promise<StoredMessage> => {
      finish();
      await inFlight;
      const data = take();
      const clearsDelayNoticeOf = effects?.clearsDelayNoticeOf ?? [];
      const stored = await client.call({ op: 'commit', id, seq: nextSeq, data, size, message, queue: SUBMISSION_QUEUE, clearsDelayNoticeOf }, data);
      return revive(stored);
    },
    abort: async () => {
      finish();
      buffered = [];
      await inFlight.catch(() => undefined);
      if (nextSeq > 0) await client.call({ op: 'abort', id });
    },
  };
}
