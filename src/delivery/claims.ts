// The claims this process holds, and their leases (ST-5): every claimed item
// in hand (buffered in a ready queue, in an attempt, being expired or removed)
// is held here until its outcome is written or it is handed back. Held leases
// are renewed while the work runs; a lease nobody renews (its holder died, or
// lost track of it through a bug) expires, and the reaper takes the work back
// without a restart.
import { createAlarm, type Clock, type TimerHandle } from '../clock.js';
import type { Logger } from '../observability/logger.js';
import type { ClaimRef, QueueRef, QueueStore } from '../store/types.js';

export interface ClaimKeeper {
  /** These claims are in hand: their leases are renewed until dropped. */
  hold(refs: ClaimRef[]): void;
  /** The claim ended: its outcome was written, it was handed back, or its lease was lost. */
  drop(ref: ClaimRef): void;
  /** Every claim still in hand. */
  held(): ClaimRef[];
  /** A claim may have been made (by anyone): the reaper looks again for the earliest lease expiry. */
  watch(): void;
  stop(): void;
}

export function createClaimKeeper(deps: {
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  /** Expired leases gave these queues ready items back. */
  onReclaimed: (queues: QueueRef[]) => void;
}): ClaimKeeper {
  const { store, clock } = deps;
  const logger = deps.logger.child({ module: 'claims' });
  const held = new Map<number, ClaimRef>();
  let renewal: TimerHandle | undefined;
  let stopped = false;
  // renewed well before expiry, so one late renewal never costs a lease
  const renewEvery = Math.max(1, Math.floor(store.leaseTimeout / 3));

  function armRenewal(): void {
    if (renewal || stopped || held.size === 0) return;
    renewal = clock.setTimer(renewEvery, () => {
      renewal = undefined;
      const refs = [...held.values()];
      // armed before the answer, so a test clock that jumps ahead renews at every step
      armRenewal();
      store.renewLeases(refs, clock.now()).then(
        (lost) => {
          for (const ref of lost) if (held.get(ref.itemId)?.claim === ref.claim) held.delete(ref.itemId);
          if (lost.length > 0) logger.warn({ items: lost.map((r) => r.itemId) }, 'leases lost: another holder took these items; their outcome will not be written');
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

  function watch(): void {
    if (stopped) return;
    store.nextLeaseExpiry().then(
      (at) => {
        if (at !== null && !stopped) reaper.at(at);
      },
      (error: unknown) => logger.error({ err: error }, 'looking up lease expiry failed'),
    );
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
    watch,
    stop() {
      stopped = true;
      renewal?.cancel();
      reaper.cancel();
    },
  };
}
