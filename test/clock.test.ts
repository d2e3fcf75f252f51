// The one clock (DL-8): real timers longer than Node's setTimeout limit
// (2^31-1 ms, about 24.8 days) wait their whole time instead of firing at once.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MAX_TIMER_MS, systemClock } from '../src/clock.js';

it('a system timer beyond 2^31-1 ms does not fire at once, and a short one still fires (DL-8)', async () => {
  let fired = 0;
  const long = systemClock.setTimer(MAX_TIMER_MS + 86_400_000, () => fired++);
  const longest = systemClock.setTimer(Number.MAX_SAFE_INTEGER / 2, () => fired++);
  // the clock's timers do not keep the process alive: this one does, while the test waits
  const keepAlive = setTimeout(() => undefined, 5_000);
  await new Promise<void>((resolve) => systemClock.setTimer(20, resolve));
  await new Promise((resolve) => setTimeout(resolve, 100));
  clearTimeout(keepAlive);
  long.cancel();
  longest.cancel();
  assert.equal(fired, 0);
});
