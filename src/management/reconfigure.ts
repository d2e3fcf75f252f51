// Live reconfiguration (RT-3, QU-7): a new config is compared with the running
// one and applied without a restart. The plan says, before anything moves,
// which queues are resubmitted to the categorizer and where their recipients
// would go, which next hops change from their next connection, which routes
// are added or removed, which listeners are added, updated in place (a renewed
// certificate too), replaced or removed (no session is dropped), and which
// keys only a restart can change.
import { planRerouting } from '../categorizer/rerouting.js';
import { createRoutingTable } from '../categorizer/routing-table.js';
import { ConfigError, formatProblem, loadConfig } from '../config/load.js';
import type { Config, ListenerConfig } from '../config/schema.js';
import type { DeliveryManager } from '../delivery/engine.js';
import { needsNewListener, type RunningListener } from '../intake/listener.js';
import type { Logger } from '../observability/logger.js';
import type { QueueStore } from '../store/types.js';
import { ManagementError } from './errors.js';

/** Recipients looked at per resubmitted queue to say where they would go. */
const SAMPLE = 10_000;

/** Keys a running Sluice cannot change: a new value waits for a restart, the old one stays in force. */
const RESTART_KEYS = ['node', 'hostname', 'dataDir', 'management', 'dns', 'poison', 'pickup', 'config'] as const;
/** ...and keys inside sections whose other keys a reload does change. */
const RESTART_SUBKEYS = [
  ['log', 'tracking'],
  ['log', 'format'],
  ['log', 'destination'],
  ['log', 'file'],
  ['log', 'syslog'],
  ['storage', 'backend'],
  ['storage', 'postgres'],
  ['storage', 'leaseTimeout'],
] as const;

export interface QueuePlan {
  Identity: string;
  Action: 'resubmit' | 'next-connection' | 'new-mail-only';
  Reason: string;
  Messages: number;
  /** Resubmit: where their recipients would go now (queue identity, or "fails: <reply>"), counted. */
  To?: Record<string, number>;
  /** More messages than were looked at to fill `To`. */
  Sampled?: boolean;
}

export interface ReloadPlan {
  Queues: QueuePlan[];
  Listeners: Array<{ Name: string; Change: 'added' | 'removed' | 'updated' | 'replaced' | 'certificate renewed' }>;
  Routes: Array<{ Name: string; Change: 'added' | 'removed' }>;
  RestartNeeded: string[];
}

/** A reload that did not happen, in the log: the old configuration keeps running. */
export function logReloadFailure(logger: Logger, trigger: string, error: unknown): void {
  if (error instanceof ConfigError) {
    logger.error({ trigger, source: error.source, problems: error.problems.map(formatProblem) }, 'configuration reload refused; the running configuration is unchanged');
  } else {
    logger.error({ trigger, err: error }, 'configuration reload failed');
  }
}

export interface Reconfigurer {
  /** What `next` would change, without changing anything. */
  plan(next: Config): Promise<ReloadPlan>;
  /** Reads the config file again and applies it; an invalid file throws ConfigError and changes nothing. */
  reload(): Promise<ReloadPlan>;
  /** What a reload would do now: the config file read again and planned, nothing applied. */
  planReload(): Promise<ReloadPlan>;
  /** The configuration in force. */
  current(): Config;
  /** Listeners replaced by a reload whose sessions may still run. */
  retired(): RunningListener[];
}

export function createReconfigurer(deps: {
  node: string;
  store: QueueStore;
  delivery: DeliveryManager;
  logger: Logger;
  listeners: RunningListener[];
  /** The config file, or undefined for the embedded default. */
  source: string | undefined;
  current: () => Config;
  /** Puts a config in force (routing table, log level, everything read live). */
  replace: (config: Config) => void;
  startListener: (listener: ListenerConfig, config: Config) => Promise<RunningListener>;
}): Reconfigurer {
  const logger = deps.logger.child({ module: 'reconfigure' });
  const retired: RunningListener[] = [];
  /** Reloads run one after another (SIGHUP, the file watch and the API may ask at once). */
  let serial: Promise<unknown> = Promise.resolve();
  const changed = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);

  function restartNeeded(before: Config, next: Config): string[] {
    const keys: string[] = RESTART_KEYS.filter((key) => changed(before[key], next[key]));
    for (const [section, key] of RESTART_SUBKEYS) {
      if (changed((before[section] as Record<string, unknown>)[key], (next[section] as Record<string, unknown>)[key])) keys.push(`${section}.${key}`);
    }
    return keys;
  }

  /** `next` with the values only a restart can change kept as they run now. */
  function inForce(before: Config, next: Config): Config {
    const kept: Record<string, unknown> = { ...next, ...Object.fromEntries(RESTART_KEYS.map((key) => [key, before[key]])) };
    for (const [section, key] of RESTART_SUBKEYS) {
      kept[section] = { ...(kept[section] as object), [key]: (before[section] as Record<string, unknown>)[key] };
    }
    return kept as Config;
  }

  async function destinations(queue: string, next: Config): Promise<Pick<QueuePlan, 'To' | 'Sampled'>> {
    const table = createRoutingTable(next.routes);
    const messages = await deps.store.listMessages([{ column: 'queue', operator: '-eq', value: queue, text: true }], SAMPLE + 1);
    const to: Record<string, number> = {};
    for (const message of messages.slice(0, SAMPLE)) {
      for (const recipient of message.recipients.filter((r) => r.status === 'Ready')) {
        const decision = table.decide(recipient.address, message.size);
        const where = decision.kind === 'queue' ? `${deps.node}/${decision.queue}` : decision.kind === 'unreachable' ? `${deps.node}/Unreachable` : `fails: ${decision.reply}`;
        to[where] = (to[where] ?? 0) + 1;
      }
    }
    return { To: to, ...(messages.length > SAMPLE ? { Sampled: true } : {}) };
  }

  async function plan(next: Config): Promise<ReloadPlan> {
    const before = deps.current();
    const records = await deps.store.listQueues();
    const queues: QueuePlan[] = [];
    for (const change of planRerouting(records, before.routes, next.routes)) {
      const messages = records.find((r) => r.name === change.queue)!.messageCount;
      queues.push({
        Identity: `${deps.node}/${change.queue}`,
        Action: change.action,
        Reason: change.reason,
        Messages: messages,
        ...(change.action === 'resubmit' ? await destinations(change.queue, next) : {}),
      });
    }
    const listeners: ReloadPlan['Listeners'] = [];
    for (const wanted of next.listeners) {
      const running = deps.listeners.find((l) => l.name === wanted.name);
      if (!running) listeners.push({ Name: wanted.name, Change: 'added' });
      else if (needsNewListener(running.settings, wanted, before.auth.users.length, next.auth.users.length)) listeners.push({ Name: wanted.name, Change: 'replaced' });
      else if (changed(running.settings, wanted) || changed([before.acceptedDomains, before.relay, before.auth], [next.acceptedDomains, next.relay, next.auth])) {
        listeners.push({ Name: wanted.name, Change: 'updated' });
      } else if (await running.certificateChanged()) listeners.push({ Name: wanted.name, Change: 'certificate renewed' });
    }
    for (const running of deps.listeners) {
      if (!next.listeners.some((l) => l.name === running.name)) listeners.push({ Name: running.name, Change: 'removed' });
    }
    const names = (config: Config) => new Set(config.routes.map((r) => r.name));
    const routes: ReloadPlan['Routes'] = [
      ...[...names(next)].filter((name) => !names(before).has(name)).map((Name) => ({ Name, Change: 'added' as const })),
      ...[...names(before)].filter((name) => !names(next).has(name)).map((Name) => ({ Name, Change: 'removed' as const })),
    ];
    return { Queues: queues, Listeners: listeners, Routes: routes, RestartNeeded: restartNeeded(before, next) };
  }

  /** Starts a listener; one that cannot (its port taken, its certificate unreadable) is logged and left out. */
  async function tryStart(listener: ListenerConfig, config: Config): Promise<RunningListener | undefined> {
    try {
      return await deps.startListener(listener, config);
    } catch (error) {
      logger.error({ err: error, listener: listener.name }, 'listener could not start');
      return undefined;
    }
  }

  async function applyListeners(before: Config, config: Config, changes: ReloadPlan['Listeners']): Promise<void> {
    for (const { Name, Change } of changes) {
      const index = deps.listeners.findIndex((l) => l.name === Name);
      const wanted = config.listeners.find((l) => l.name === Name);
      if (Change === 'updated') deps.listeners[index]!.update(wanted!, config);
      // same paths, new files (a renewed certificate): new TLS sessions get them, no session is dropped
      if (Change === 'updated' || Change === 'certificate renewed') {
        await deps.listeners[index]!.renewCertificate().catch((error: unknown) =>
          logger.error({ err: error, listener: Name }, 'certificate not reloaded; new TLS sessions keep the one loaded before'),
        );
      }
      if (Change === 'removed' || Change === 'replaced') {
        const old = deps.listeners[index]!;
        old.retire();
        retired.push(old);
        deps.listeners.splice(index, 1);
        if (Change === 'removed') continue;
        // a replacement that cannot start gives way to the listener as it was, so mail still gets in
        const fresh = (await tryStart(wanted!, config)) ?? (await tryStart(old.settings, before));
        if (!fresh) continue;
        fresh.suspended = old.suspended;
        deps.listeners.splice(index, 0, fresh);
      }
      if (Change === 'added') {
        const fresh = await tryStart(wanted!, config);
        if (fresh) deps.listeners.push(fresh);
      }
    }
  }

  return {
    plan,
    reload() {
      const run = serial.then(reloadNow, reloadNow);
      serial = run.catch(() => undefined);
      return run;
    },
    retired: () => [...retired],
    async planReload() {
      return plan(await readSource());
    },
    current: () => deps.current(),
  };

  async function readSource(): Promise<Config> {
    if (deps.source === undefined) throw new ManagementError(409, 'Conflict', 'Sluice runs on the embedded default: there is no config file to reload');
    return (await loadConfig(deps.source, { checkFiles: true })).config;
  }

  async function reloadNow(): Promise<ReloadPlan> {
    const next = await readSource();
    const result = await plan(next);
    const before = deps.current();
    const config = inForce(before, next);
    deps.replace(config);
    await applyListeners(before, config, result.Listeners);
    for (const queue of result.Queues) {
      const name = queue.Identity.slice(deps.node.length + 1);
      if (queue.Action === 'resubmit') await deps.delivery.resubmit(name);
      if (queue.Action === 'next-connection') deps.delivery.reconnect(name);
    }
    if (result.RestartNeeded.length > 0) logger.warn({ keys: result.RestartNeeded }, 'these settings change only with a restart; the running values stay in force');
    logger.info({ source: deps.source, queues: result.Queues, listeners: result.Listeners }, 'configuration reloaded');
    return result;
  }
}
