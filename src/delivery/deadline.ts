// One deadline at a time for an exchange with a next hop (DL-9), on Sluice's
// clock. `extend` restarts the current wait when the next hop shows progress,
// so a slow but live hop is not cut off while a silent one is.
import type { Clock, TimerHandle } from '../clock.js';

export interface Deadline {
  /** Calls the expiry after `ms` unless cancelled or re-armed; `extendable`: progress restarts the wait. */
  arm(ms: number, extendable: boolean): void;
  /** Progress: an extendable wait starts over. */
  extend(): void;
  cancel(): void;
}

export function createDeadline(clock: Clock, onExpire: (ms: number) => void): Deadline {
  let current: { ms: number; extendable: boolean; timer: TimerHandle } | undefined;
  const arm = (ms: number, extendable: boolean) => {
    current?.timer.cancel();
    const timer = clock.setTimer(ms, () => {
      current = undefined;
      onExpire(ms);
    });
    current = { ms, extendable, timer };
  };
  return {
    arm,
    extend() {
      if (current?.extendable) arm(current.ms, true);
    },
    cancel() {
      current?.timer.cancel();
      current = undefined;
    },
  };
}
