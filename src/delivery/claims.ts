// The claims this process holds, and their leases (ST-5): every claimed item
// in hand (buffered in a ready queue, in an attempt, being expired or removed)
// is held here until its outcome is written or it is handed back. Held leases
// are renewed while the work runs; a lease nobody renews (its holder died, or
// lost track of it through a bug) expires, and the reaper takes the work back
// without a restart.
//
// On a store several nodes share, every node sweeps, whatever it holds itself (ST-5, QU-6 in a cluster): every
// SWEEP interval (half the lease timeout, within bounds) it looks up the
// earliest lease of any holder and arms the reaper for it, so a node with no
// work of its own takes over a dead node's claims at most a sweep after their
// lease lapsed. A node's heartbeat is its lease renewals: a node that stops
// renewing for leaseTimeout has lost its claims, whatever else it does. Each
// sweep costs one query when nothing expired; every few sweeps the caller is
// told (onSweep) so it can look at the rest of the shared store again.
import { createAlarm, type Clock, type TimerHandle } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { ClaimRef, QueueRef, QueueStore } from '../store/types.js';

/** Every this many sweeps, onSweep says `full`. */
export const FULL_SWEEP_EVERY = 6;

/** How often every node looks for expired leases: half the lease timeout, at least 250 ms and at most 15 s. */
export const sweepIntervalOf = (leaseTimeout: number): number => Math.min(15_000, Math.max(250, Math.floor(leaseTimeout / 2)));

export interface ClaimKeeper {
  /** These claims are in hand: their leases are renewed until dropped. */
  hold(refs: ClaimRef[]): void;
  /** The claim ended: its outcome was written, it was handed back, or its lease was lost. */
  drop(ref: ClaimRef): void;
  /** Every claim still in hand. */
  held(): ClaimRef[];
  /** A claim may have been made (by anyone): the reaper looks again for the earliest lease expiry; starts the periodic sweep. */
  watch(): void;
  stop(): void;
}

export function createClaimKeeper(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  /** Expired leases gave these queues ready items back. */
  onReclaimed: (queues: QueueRef[]) => void;
  /**
   * A sweep ran: `full` every FULL_SWEEP_EVERY sweeps, `recovered` when the store answered again after a sweep
   * that failed (the database was unreachable): then whatever waits should be looked at again.
   */
  onSweep?: (sweep: { full: boolean; recovered: boolean }) => void;
}): ClaimKeeper {
  const { store, clock } = deps;
  const logger = deps.logger.child({ module: 'claims' });
  const held = new Map<number, ClaimRef>();
  let renewal: TimerHandle | undefined;
  let stopped = false;
  // renewed well before expiry, so one late renewal never costs a lease
  const renewEvery = Math.max(1, Math.floor(store.leaseTimeout / 3));
  const sweepEvery = sweepIntervalOf(store.leaseTimeout);
  let sweepTimer: TimerHandle | undefined;
  let sweeps = 0;
  let sweepFailed = false;

  function armRenewal(): void {
    if (renewal || stopped || held.size === 0) return;
    renewal = clock.setTimer(renewEvery, () => {
      renewal = undefined;
      const refs = [...held.values()];
      // armed before the answer, so a test clock that jumps ahead renews at every step
      armRenewal();
      store.renewLeases(refs, clock.now()).then(
        (lost) => {
          // an item whose work ended while the renewal was on its way is not lost: it was dropped meanwhile
          const stillHeld = lost.filter((ref) => held.get(ref.itemId)?.claim === ref.claim);
          for (const ref of stillHeld) held.delete(ref.itemId);
          if (stillHeld.length > 0) logger.warn({ items: stillHeld.map((r) => r.itemId) }, 'leases lost: another holder took these items; their outcome will not be written');
        },
        (error: unknown) => logger.error({ err: error }, 'renewing leases failed'),
      );
    });
  }

  const reaper = createAlarm(clock, () => {
    store.reclaimExpiredLeases(clock.now()).then(
      (queues) => {
        if (queues.length > 0) logger.warn({ queues: queues.map((q) => q.name) }, 'expired leases taken back');
        deps.onReclaimed(queues);
        watch();
      },
      (error: unknown) => logger.error({ err: error }, 'taking back expired leases failed'),
    );
  });

  function watch(): Promise<boolean> {
    if (stopped) return Promise.resolve(true);
    return store.nextLeaseExpiry().then(
      (at) => {
        if (at !== null && !stopped) reaper.at(at);
        return true;
      },
      (error: unknown) => {
        logger.error({ err: error }, 'looking up lease expiry failed');
        return false;
      },
    );
  }

  function sweep(): void {
    sweepTimer = undefined;
    if (stopped) return;
    sweeps++;
    void watch().then((answered) => {
      const recovered = answered && sweepFailed;
      sweepFailed = !answered;
      if (recovered) logger.info('the queue store answers again');
      if (!stopped) deps.onSweep?.({ full: sweeps % FULL_SWEEP_EVERY === 0, recovered });
    });
    armSweep();
  }

  function armSweep(): void {
    // one node alone on its store takes back only its own claims, which its reaper already watches
    if (store.shared && !stopped && !sweepTimer) sweepTimer = clock.setTimer(sweepEvery, sweep);
  }

  return {
    hold(refs) {
      for (const ref of refs) held.set(ref.itemId, { itemId: ref.itemId, claim: ref.claim });
      armRenewal();
    },
    drop(ref) {
      if (held.get(ref.itemId)?.claim === ref.claim) held.delete(ref.itemId);
      if (held.size === 0) {
        renewal?.cancel();
        renewal = undefined;
      }
    },
    held: () => [...held.values()],
    watch() {
      void watch();
      armSweep();
    },
    stop() {
      stopped = true;
      renewal?.cancel();
      sweepTimer?.cancel();
      reaper.cancel();
    },
  };
}
