// Retry timing, as pure functions of what happened so far (DL-3, DL-4).

import type { BounceProfile, Config } from '../config/schema.js';

/**
 * Queue-level connection retry (DL-3, Exchange): after the n-th consecutive
 * failure to reach a next hop, wait glitchRetryInterval for the first
 * glitchRetryCount failures, then transientFailureRetryInterval for the next
 * transientFailureRetryCount, then outboundConnectionFailureRetryInterval.
 */
export function connectionRetryDelay(retry: Config['retry'], consecutiveFailures: number): number {
  if (consecutiveFailures <= retry.glitchRetryCount) return retry.glitchRetryInterval;
  if (consecutiveFailures <= retry.glitchRetryCount + retry.transientFailureRetryCount) return retry.transientFailureRetryInterval;
  return retry.outboundConnectionFailureRetryInterval;
}

/** Message-level retry (DL-4, ESA bounce profile): initialRetry, growing by backoff, at most maxRetry. */
export function messageRetryDelay(profile: BounceProfile, previousAttempts: number): number {
  return Math.min(profile.initialRetry * profile.backoff ** previousAttempts, profile.maxRetry);
}
