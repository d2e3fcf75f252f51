// Message bodies in the PostgreSQL store: chunks (bytea) keyed by message id
// and number. Chunks written while a message arrives are marked as receiving,
// by node, until the acceptance that commits the envelope clears the mark; an
// aborted message's chunks are deleted, and a node's own marks left by a crash
// are swept when it starts (ST-3). Reads come back a batch at a time, so no
// body is ever whole in memory (IN-3).
import type { Queryable } from './connection.js';
import { CHUNK_BYTES } from './lifecycle.js';

const CHUNKS_PER_READ = Math.ceil((1024 * 1024) / CHUNK_BYTES);

export async function writeChunk(db: Queryable, node: string, id: string, seq: number, data: Buffer): Promise<void> {
  await db.query(
    'WITH mark AS (INSERT INTO receiving (message_id, node) SELECT $1, $4 WHERE $2::integer = 0 ON CONFLICT DO NOTHING) ' +
      'INSERT INTO body_chunks (message_id, seq, data) VALUES ($1, $2, $3)',
    [id, seq, data, node],
  );
}

export async function dropBody(db: Queryable, id: string): Promise<void> {
  await db.query('WITH done AS (DELETE FROM receiving WHERE message_id = $1) DELETE FROM body_chunks WHERE message_id = $1', [id]);
}

/**
 * Bodies this node was receiving when it stopped: no commit will ever come for them. Node names are unique
 * in a cluster, so no other node's mail in progress is touched.
 */
export async function sweepPartialBodies(db: Queryable, node: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'WITH marks AS (DELETE FROM receiving WHERE node = $1 RETURNING message_id), ' +
      'chunks AS (DELETE FROM body_chunks WHERE message_id IN (SELECT message_id FROM marks)) SELECT count(*) AS n FROM marks',
    [node],
  );
  return rows[0]?.n ?? 0;
}

/** The body in order, about a megabyte per query. */
export async function* readChunks(db: Queryable, id: string): AsyncIterable<Buffer> {
  for (let fromSeq = 0; ; ) {
    const { rows } = await db.query<{ seq: number; data: Buffer }>(
      'SELECT seq, data FROM body_chunks WHERE message_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3',
      [id, fromSeq, CHUNKS_PER_READ],
    );
    for (const row of rows) yield row.data;
    if (rows.length < CHUNKS_PER_READ) return;
    fromSeq = rows[rows.length - 1]!.seq + 1;
  }
}
