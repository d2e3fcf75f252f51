// The state of one delivery queue (QU-2, DL-3, DL-7) as pure functions of
// what happened: no timers, no store, no sockets, so the rules can be tested
// alone. The engine keeps the result in the store (ST-5) and acts on it.
import type { Config } from '../config/schema.js';
import type { QueueRetry } from '../store/types.js';
import { connectionRetryDelay } from './retry-policy.js';

export type QueueStatus = 'Active' | 'Ready' | 'Retry' | 'Suspended';

/** What the store keeps of a queue. */
export interface QueueState {
  suspended: boolean;
  retry: QueueRetry | null;
}

/** What a failed connection attempt means for the queue. */
export type AfterConnectFailure =
  /** DL-3: no connection (and no claim) until `retry.at`. */
  | { kind: 'retry'; retry: QueueRetry }
  /** DL-7: idle too long; the messages go back to the categorizer. */
  | { kind: 'resubmit' }
  /** Another connection delivered while this one tried: the next hop is up, only busy; open no more for now. */
  | { kind: 'busy' };

/**
 * A connection attempt failed. The queue enters Retry unless another connection of the queue completed a
 * transaction while this attempt was being made: one hung or refused connection never stops the others, and
 * a hung connection that delivers nothing does not keep the queue out of Retry (DL-9).
 */
export function afterConnectFailure(
  state: QueueState,
  failure: { reply: string; now: number; deliveredMeanwhile: boolean },
  policy: Config['retry'],
): AfterConnectFailure {
  if (failure.deliveredMeanwhile) return { kind: 'busy' };
  const failures = (state.retry?.failures ?? 0) + 1;
  const idleSince = state.retry?.idleSince ?? failure.now;
  if (failure.now - idleSince >= policy.maxIdleTimeBeforeResubmit) return { kind: 'resubmit' };
  return {
    kind: 'retry',
    retry: { at: failure.now + connectionRetryDelay(policy, failures), since: failure.now, failures, lastError: failure.reply, idleSince },
  };
}

/** DL-3: a successful connection resets the Retry state. */
export const afterConnected = (): QueueRetry | null => null;

/** MG-2 "retry now": the next try is due at once; the failure count goes on, so a failure is scheduled as the next one would have been. */
export function afterRetryNow(state: QueueState, now: number): QueueRetry | null {
  return state.retry ? { ...state.retry, at: now } : null;
}

/** The Status an operator sees (QU-2). */
export function statusOf(state: QueueState, connections: number, now: number): QueueStatus {
  if (state.suspended) return 'Suspended';
  if (state.retry && state.retry.at > now) return 'Retry';
  return connections > 0 ? 'Active' : 'Ready';
}

/** Whether new connections may be opened now (the store's claim enforces the same rule). */
export const mayConnect = (state: QueueState, now: number): boolean => !state.suspended && (state.retry === null || state.retry.at <= now);
