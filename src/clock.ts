// The one source of time and timers (DL-8). Production code asks a Clock for
// "now" and for timers, never Date.now() or setTimeout directly, so tests can
// drive hours of schedule in seconds with TestClock.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `callback` once, `delayMs` from now. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

/** A time as RFC 5322 writes dates in headers, in UTC: `Tue, 24 Nov 2026 05:23:02 +0000`. */
export const rfc5322Date = (ms: number): string => new Date(ms).toUTCString().replace('GMT', '+0000');

/** Node fires a setTimeout longer than this at once (it clamps to 1 ms); longer waits are re-armed in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(delayMs, callback) {
    const dueAt = Date.now() + delayMs;
    let timer: NodeJS.Timeout;
    const arm = (wait: number) => {
      timer = setTimeout(() => {
        const left = dueAt - Date.now();
        if (left > 0) arm(left);
        else callback();
      }, Math.min(Math.max(0, wait), MAX_TIMER_MS));
      timer.unref();
    };
    arm(delayMs);
    return { cancel: () => clearTimeout(timer) };
  },
};

/** One timer for many deadlines: it fires at the earliest time asked for. */
export interface Alarm {
  /** Makes the alarm fire at `time` unless it is already set earlier. */
  at(time: number): void;
  cancel(): void;
}

export function createAlarm(clock: Clock, fire: () => void): Alarm {
  let pending: { time: number; timer: TimerHandle } | undefined;
  return {
    at(time) {
      if (pending && pending.time <= time) return;
      pending?.timer.cancel();
      pending = {
        time,
        timer: clock.setTimer(time - clock.now(), () => {
          pending = undefined;
          fire();
        }),
      };
    },
    cancel() {
      pending?.timer.cancel();
      pending = undefined;
    },
  };
}

interface PendingTimer {
  dueAt: number;
  order: number;
  callback: () => void;
}

/** A clock that only moves when the test advances it. */
export class TestClock implements Clock {
  private current: number;
  private pending: PendingTimer[] = [];
  private created = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer: PendingTimer = { dueAt: this.current + Math.max(0, delayMs), order: this.created++, callback };
    this.pending.push(timer);
    return { cancel: () => { this.pending = this.pending.filter((t) => t !== timer); } };
  }

  /** When the earliest pending timer falls due, if any. */
  nextTimerAt(): number | undefined {
    return this.pending.length > 0 ? Math.min(...this.pending.map((t) => t.dueAt)) : undefined;
  }

  /** Moves time forward, firing every timer that falls due, in due order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      const due = this.pending
        .filter((t) => t.dueAt <= target)
        .sort((a, b) => a.dueAt - b.dueAt || a.order - b.order)[0];
      if (!due) break;
      this.pending = this.pending.filter((t) => t !== due);
      this.current = due.dueAt;
      due.callback();
    }
    this.current = target;
  }
}
