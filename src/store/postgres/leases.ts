// Leases on claimed rows (ST-5), as in the SQLite store: a claim stamps its
// rows with the store's owner, one fresh fencing token per claim call (from a
// sequence, so no token is ever handed out twice, whatever rolls back) and an
// expiry. The rows are picked with FOR UPDATE SKIP LOCKED, so nodes claiming
// at once take different rows and never wait on each other. The statements
// below are the only way to spell "claim these rows" and "is it still mine".
import { ITEM_COLUMNS } from './lifecycle.js';

export interface LeaseOptions {
  owner: string;
  leaseTimeout: number;
}

/** The first two parameters of every claim statement: owner and expiry. */
export const leaseParams = (options: LeaseOptions, now: number): [string, number] => [options.owner, now + options.leaseTimeout];

const TOKEN = "lease AS (SELECT nextval('claim_tokens') AS token)";

/**
 * Claims the items whose ids `selection` (a subquery; its own parameters from $3) picks, returning ITEM_COLUMNS.
 * An attempt begun under an earlier lease is not one under this one (QU-6).
 */
export const claimItems = (selection: string, extraSet = ''): string => `
  WITH ${TOKEN}
  UPDATE items SET state = 'active', attempting = false, lease_owner = $1, lease_token = lease.token, lease_expires = $2${extraSet}
  FROM lease WHERE items.id IN (${selection}) RETURNING ${ITEM_COLUMNS}`;

/** Claims the messages whose seqs `selection` picks, returning the whole row. */
export const claimMessages = (selection: string): string => `
  WITH ${TOKEN}
  UPDATE messages SET status = 'Active', lease_owner = $1, lease_token = lease.token, lease_expires = $2
  FROM lease WHERE messages.seq IN (${selection}) RETURNING messages.*`;

/** The lease columns keep the last holder after a row is let go; only with the claimed state do they mean it is held. */
export const heldItem = (claimParam: string, table = 'items'): string => `${table}.state = 'active' AND ${table}.lease_token = ${claimParam}`;
export const heldMessage = (claimParam: string): string => `status = 'Active' AND lease_token = ${claimParam}`;

/** The token of an item handed out without a claim (delay notices): tokens start at 1, so it fences every write out. */
export const NO_CLAIM = 0;
