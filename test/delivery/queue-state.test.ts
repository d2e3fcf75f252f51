// The DL-3 / DL-7 queue state machine alone: pure functions, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { afterConnectFailure, afterConnected, afterRetryNow, mayConnect, statusOf, type QueueState } from '../../src/delivery/queue-state.js';

const { retry: policy } = parseConfigText('retry: { maxIdleTimeBeforeResubmit: 12h }', 'test.yaml');
const MIN = 60_000;
const fresh: QueueState = { suspended: false, retry: null };

function failRepeatedly(times: number, every: (n: number) => number, start = 0) {
  let state = fresh;
  let now = start;
  const waits: number[] = [];
  for (let n = 0; n < times; n++) {
    const next = afterConnectFailure(state, { reply: '451 4.4.1 refused', now, deliveredMeanwhile: false }, policy);
    assert.equal(next.kind, 'retry');
    if (next.kind !== 'retry') return { state, waits };
    waits.push(next.retry.at - now);
    state = { ...state, retry: next.retry };
    now = next.retry.at + every(n);
  }
  return { state, waits };
}

describe('queue state (DL-3, DL-7)', () => {
  it('follows the Exchange schedule: 4 glitch retries of 1 min, 6 of 5 min, then 10 min', () => {
    const { waits } = failRepeatedly(12, () => 0);
    assert.deepEqual(waits, [1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 10, 10].map((m) => m * MIN));
  });

  it('counts idle time from the first failure and resubmits after maxIdleTimeBeforeResubmit', () => {
    const { state } = failRepeatedly(3, () => 0, 1_000);
    assert.equal(state.retry!.idleSince, 1_000);
    const late = afterConnectFailure(state, { reply: '451 down', now: 1_000 + 12 * 60 * MIN, deliveredMeanwhile: false }, policy);
    assert.deepEqual(late, { kind: 'resubmit' });
  });

  it('keeps a queue out of Retry when another connection delivered while the attempt failed (busy, not down)', () => {
    assert.deepEqual(afterConnectFailure(fresh, { reply: '421 too many connections', now: 0, deliveredMeanwhile: true }, policy), { kind: 'busy' });
  });

  it('resets on a successful connection, and retry now makes the next try due at once without forgetting the count', () => {
    const { state } = failRepeatedly(5, () => 0);
    assert.equal(afterConnected(), null);
    const now = state.retry!.since + 1;
    const retryNow = afterRetryNow(state, now)!;
    assert.equal(retryNow.at, now);
    assert.equal(retryNow.failures, 5);
    assert.equal(afterRetryNow(fresh, now), null);
  });

  it('shows Suspended over Retry over Active over Ready, and connects only when neither suspended nor waiting', () => {
    const retry = { at: 100, since: 0, failures: 1, lastError: 'x', idleSince: 0 };
    assert.equal(statusOf({ suspended: true, retry }, 2, 50), 'Suspended');
    assert.equal(statusOf({ suspended: false, retry }, 2, 50), 'Retry');
    assert.equal(statusOf({ suspended: false, retry }, 2, 100), 'Active');
    assert.equal(statusOf(fresh, 0, 50), 'Ready');
    assert.equal(mayConnect({ suspended: false, retry }, 99), false);
    assert.equal(mayConnect({ suspended: false, retry }, 100), true);
    assert.equal(mayConnect({ suspended: true, retry: null }, 0), false);
  });
});
