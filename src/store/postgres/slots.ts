// Connection slots (DL-1 across the cluster): a route's maxConnections holds
// for all nodes together. Slot n of a queue is a row leased to the node whose
// connection uses it; a node opens a connection only with a slot in hand, and
// gives it back when the connection closes. The leases are renewed while the
// connections are open, so the slots of a node that died (kill -9, a lost
// network) come free once their lease lapses (leaseTimeout), like its claims.
import type pg from 'pg';
import type { Clock, TimerHandle } from '../../clock.js';

// the lowest slot that is free or whose lease lapsed; a slot another node takes at the same moment is not
// taken over (the conflict re-checks its lease), and the caller tries again
const ACQUIRE = `
  WITH free AS (
    SELECT s FROM generate_series(0, $3::integer - 1) AS s
    WHERE NOT EXISTS (SELECT 1 FROM connection_slots c WHERE c.queue = $1 AND c.slot = s AND c.expires > $4)
    ORDER BY s LIMIT 1)
  INSERT INTO connection_slots (queue, slot, owner, expires) SELECT $1, s, $2, $5 FROM free
  ON CONFLICT (queue, slot) DO UPDATE SET owner = excluded.owner, expires = excluded.expires WHERE connection_slots.expires <= $4
  RETURNING slot`;

const ATTEMPTS = 3;

export class ConnectionSlots {
  private readonly held = new Set<string>();
  private renewal: TimerHandle | undefined;
  private readonly renewEvery: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: { clock: Clock; owner: string; leaseTimeout: number },
  ) {
    this.renewEvery = Math.max(1, Math.floor(options.leaseTimeout / 3));
  }

  async acquire(queue: string, max: number, now: number): Promise<number | null> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const { rows } = await this.pool.query<{ slot: number }>(ACQUIRE, [queue, this.options.owner, max, now, now + this.options.leaseTimeout]);
      const slot = rows[0]?.slot;
      if (slot !== undefined) {
        this.held.add(JSON.stringify([queue, slot]));
        this.arm();
        return slot;
      }
      // nothing free, or a race lost: another look shows which
      const { rows: taken } = await this.pool.query<{ n: number }>('SELECT count(*) AS n FROM connection_slots WHERE queue = $1 AND slot < $2 AND expires > $3', [
        queue,
        max,
        now,
      ]);
      if (taken[0]!.n >= max) return null;
    }
    return null;
  }

  async release(queue: string, slot: number): Promise<void> {
    this.held.delete(JSON.stringify([queue, slot]));
    if (this.held.size === 0) {
      this.renewal?.cancel();
      this.renewal = undefined;
    }
    await this.pool.query('DELETE FROM connection_slots WHERE queue = $1 AND slot = $2 AND owner = $3', [queue, slot, this.options.owner]);
  }

  private arm(): void {
    if (this.renewal || this.held.size === 0) return;
    this.renewal = this.options.clock.setTimer(this.renewEvery, () => {
      this.renewal = undefined;
      this.arm();
      const now = this.options.clock.now();
      this.pool.query('UPDATE connection_slots SET expires = $2 WHERE owner = $1', [this.options.owner, now + this.options.leaseTimeout]).catch(() => undefined);
    });
  }

  stop(): void {
    this.renewal?.cancel();
    this.renewal = undefined;
  }
}

/** At a node's start: the slots its earlier process held are free (node names are unique). */
export async function freeSlotsOf(pool: pg.Pool, node: string): Promise<void> {
  await pool.query("DELETE FROM connection_slots WHERE split_part(owner, '/', 1) = $1", [node]);
}
