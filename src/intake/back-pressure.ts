// Back-pressure (IN-6, the ESA's soft bounce): when the queue store passes its
// limits (queued messages, queued bytes, free disk), new mail is refused with
// 452 4.3.1 so senders keep it and retry; mail already accepted is never
// dropped. Acceptance resumes by itself below 90 % of the limits (hysteresis).
// On a store several nodes share, the limits count the whole cluster's mail,
// and free disk is the database's concern, not this node's.
import { statfs } from 'node:fs/promises';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { QueueStore } from '../store/types.js';

/** How long one look at the store's totals stays valid. */
const CHECK_INTERVAL_MS = 250;
const RESUME_FRACTION = 0.9;

export interface BackPressure {
  /** True while new mail must be refused. */
  refusing(): Promise<boolean>;
}

export function createBackPressure(deps: { store: QueueStore; clock: Clock; logger: Logger; dataDir: string; limits: () => Config['storage']['limits'] }): BackPressure {
  const logger = deps.logger.child({ module: 'intake' });
  let refusing = false;
  let checkedAt = -Infinity;
  let checking: Promise<void> | undefined;

  async function check(): Promise<void> {
    const limits = deps.limits();
    // a store several nodes share is not on this disk: its messages and bytes are the cluster's, its disk the database's
    const [{ messages, bodyBytes, reusableBytes = 0 }, disk] = await Promise.all([deps.store.stats(), deps.store.shared ? undefined : statfs(deps.dataDir)]);
    // space the store frees inside its own files (delivered mail) is as good as free disk for new mail
    const freeDisk = disk ? disk.bavail * disk.bsize + reusableBytes : Number.MAX_SAFE_INTEGER;
    const over = messages >= limits.maxQueuedMessages || bodyBytes >= limits.maxQueuedBytes || freeDisk < limits.minFreeDisk;
    const under =
      messages < limits.maxQueuedMessages * RESUME_FRACTION &&
      bodyBytes < limits.maxQueuedBytes * RESUME_FRACTION &&
      freeDisk >= limits.minFreeDisk / RESUME_FRACTION;
    if (!refusing && over) logger.warn({ messages, bodyBytes, freeDisk, limits }, 'storage limits reached: refusing new mail with 452 4.3.1');
    if (refusing && under) logger.info({ messages, bodyBytes, freeDisk }, 'storage below limits: accepting new mail again');
    refusing = refusing ? !under : over;
    checkedAt = deps.clock.now();
  }

  return {
    async refusing() {
      if (deps.clock.now() - checkedAt >= CHECK_INTERVAL_MS) {
        checking ??= check().finally(() => (checking = undefined));
        await checking;
      }
      return refusing;
    },
  };
}
