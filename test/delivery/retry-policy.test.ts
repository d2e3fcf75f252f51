// The retry schedules as pure functions (DL-3, DL-4): the whole schedule is asserted.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { connectionRetryDelay, messageRetryDelay } from '../../src/delivery/retry-policy.js';

const defaults = parseConfigText('', 'test');

it('queue-level connection retry: 4 x 1 min, then 6 x 5 min, then every 10 min (DL-3)', () => {
  const schedule = Array.from({ length: 13 }, (_, i) => connectionRetryDelay(defaults.retry, i + 1) / 60_000);
  assert.deepEqual(schedule, [1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 10, 10, 10]);
});

it('message-level retry: 60 s growing by 2 up to 3600 s (DL-4, ESA defaults)', () => {
  const profile = defaults.bounceProfiles.default!;
  const schedule = Array.from({ length: 9 }, (_, attempts) => messageRetryDelay(profile, attempts) / 1000);
  assert.deepEqual(schedule, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
});
