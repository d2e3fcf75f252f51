// One next hop's ready items in process (QU-5, DL-9): claimed from the store
// in FIFO batches and handed to whichever connection is free next, one item
// at a time (graphile-worker's local queue). Connections never own a batch,
// so with C connections no message trails a newer one by more than C places.
import type { DeliveryItem } from '../store/types.js';

export interface ReadyQueue {
  /** The oldest ready item, claimed; undefined when the store has none for this queue now. */
  take(): Promise<DeliveryItem | undefined>;
  /** An item whose attempt did not happen goes back to the front. */
  putBack(item: DeliveryItem): void;
  /** Claimed items waiting for a connection. */
  readonly buffered: number;
  /** The last claim filled the whole batch: the store may have more. */
  readonly more: boolean;
  /** Empties the buffer, returning what it held (to be handed back to the store). */
  drain(): DeliveryItem[];
}

export function createReadyQueue(claim: (limit: number) => Promise<DeliveryItem[]>, batch: () => number): ReadyQueue {
  let items: DeliveryItem[] = [];
  let filling: Promise<number> | undefined;
  let more = false;

  async function fill(): Promise<number> {
    const size = batch();
    const claimed = await claim(size);
    more = claimed.length === size;
    items.push(...claimed);
    return claimed.length;
  }

  const refill = () => (filling ??= fill().finally(() => (filling = undefined)));

  return {
    async take() {
      for (;;) {
        const next = items.shift();
        if (next) {
          // the next claim is made while half a batch is still here, so connections do not wait for it
          if (more && items.length < batch() / 2) refill().catch(() => undefined);
          return next;
        }
        // every connection that finds the buffer empty waits for the same claim, in the order they asked
        if ((await refill()) === 0 && items.length === 0) return undefined;
      }
    },
    putBack(item) {
      items.unshift(item);
    },
    get buffered() {
      return items.length;
    },
    get more() {
      return more || items.length > 0;
    },
    drain() {
      const drained = items;
      items = [];
      more = false;
      return drained;
    },
  };
}
