// Waiting in tests: polling for a condition in real time, and driving the test
// clock through hours of schedule, letting the work each timer starts finish
// before the next one fires.
import type { TestClock } from '../../src/clock.js';
import type { TestSluice } from './sluice.js';

export const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until the condition holds (real time: for sockets and the store, not for timers). */
export async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await settle(20);
  }
}

/** Waits until no store request and no delivery connection is busy, and the log has been still for a moment. */
async function quiet(sluice: TestSluice): Promise<void> {
  const deadline = Date.now() + 5000;
  let seen = -1;
  for (;;) {
    const busy = sluice.sluice.store.pendingOperations() > 0 || sluice.sluice.delivery.queues().some((q) => q.connections > q.idleConnections);
    if (!busy && sluice.logs.length === seen) return;
    if (Date.now() > deadline) return;
    seen = sluice.logs.length;
    await settle(25);
  }
}

/** Runs `durationMs` of test time, stopping at every timer until the work it started is done. */
export async function runClock(sluice: TestSluice, durationMs: number): Promise<void> {
  const clock: TestClock = sluice.clock;
  const end = clock.now() + durationMs;
  await quiet(sluice);
  for (;;) {
    const next = clock.nextTimerAt();
    if (next === undefined || next > end) break;
    clock.advance(Math.max(0, next - clock.now()));
    await quiet(sluice);
  }
  clock.advance(end - clock.now());
  await quiet(sluice);
}
