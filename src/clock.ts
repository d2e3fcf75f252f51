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

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

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
