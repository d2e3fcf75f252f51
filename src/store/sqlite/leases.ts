// Leases on claimed rows (ST-5). A claim stamps its rows with the store's
// owner, a fresh fencing token and an expiry; every later write about a row
// names the token it was handed, and the SQL fragments below are the only way
// statements spell "claim this row" and "is it still mine", so no statement can
// forget the fence.
import type { Database } from 'better-sqlite3';

export interface LeaseOptions {
  owner: string;
  leaseTimeout: number;
}

/** The parameters CLAIM_ITEM and CLAIM_MESSAGE bind. */
export interface Lease {
  owner: string;
  token: number;
  expires: number;
}

// An attempt begun under an earlier lease is not one under this one: only this
// holder's beginAttempt may make a crash count against the message (QU-6).
export const CLAIM_ITEM = "state = 'active', attempting = 0, lease_owner = @owner, lease_token = @token, lease_expires = @expires";
export const CLAIM_MESSAGE = "status = 'Active', lease_owner = @owner, lease_token = @token, lease_expires = @expires";
// The lease columns keep the last holder after a row is let go; only together
// with the claimed state do they mean the row is held.
export const HELD_ITEM = "state = 'active' AND lease_token = @claim";
export const HELD_MESSAGE = "status = 'Active' AND lease_token = @claim";

/**
 * The token of an item handed out without a claim (delay notices are read only): tokens start at 1, so it
 * matches no lease and every fenced write made with it is refused.
 */
export const NO_CLAIM = 0;

/**
 * Leases for one claim call: one new token per call, shared by every row it claims. The counter is a row
 * of the database, so it survives restarts and, in WAL, can only roll back together with the claims that
 * used it: no surviving row ever holds a token the counter will hand out again.
 */
export function prepareLeases(db: Database, options: LeaseOptions) {
  const nextToken = db.prepare<[], { last: number }>('UPDATE claim_tokens SET last = last + 1 WHERE id = 1 RETURNING last');
  return {
    take(now: number): Lease {
      return { owner: options.owner, token: nextToken.get()!.last, expires: now + options.leaseTimeout };
    },
    expiresAt(now: number): number {
      return now + options.leaseTimeout;
    },
  };
}

export type Leases = ReturnType<typeof prepareLeases>;
