// The `drain` benchmark: a backlog after an outage. With the next hop down, Sluice accepts N and
// keeps them queued; then the sink comes up and Sluice is restarted (the stand-in for "retry now",
// which does not exist yet: on start every non-empty queue is tried at once), timed from the
// restart until the sink has all N. Postfix the same with the peers' `postfix-relay-bench.sh drain`.
import { benchDirectory, loadProblems, lossProblems, summary, waitForSink, type EndToEnd } from './measure.js';
import { comparedRunOptions, deliveryTimeoutOption, describeLoad, loadOptions, loadSettings, readOptions, type LoadSettings } from './options.js';
import { freePort, preparePostfix, runPostfixScript, startSmtpSink } from './peers.js';
import type { BenchContext } from './run.js';
import { countStoredMessages, exitProblems, loggedSummary, startSluice, type SluiceProcess, type SluiceSetup } from './sluice.js';
import { runLoad } from './smtp-load.js';
import { diskUsage, every, perSecond, ratioOf, round2, secondsSince, waitUntil } from './support.js';

/** Stage target: Sluice drains at least as many msg/s as Postfix. */
const TARGET_RATIO = 1;

export const DRAIN_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  ...deliveryTimeoutOption,
  ...comparedRunOptions,
};

interface DrainSettings {
  load: LoadSettings;
  /** Longest wait for each phase: routing the backlog, draining it. */
  timeoutMs: number;
  cpuProfileDir: string | undefined;
}

export async function runDrain(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, DRAIN_OPTIONS);
  const settings: DrainSettings = { load: loadSettings(values), timeoutMs: values['delivery-timeout'] * 1000, cpuProfileDir: values['cpu-prof'] };
  context.progress(`N=${settings.load.messages} SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes}`);

  const sluice = await drainSluice(context, settings);
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await drainPostfix(context, settings);
  const postfixRate = 'drain_msgs_per_s' in postfix ? (postfix.drain_msgs_per_s as number) : null;
  const ratio = ratioOf(sluice.result.drain.perSecond, postfixRate);
  if (ratio !== null) context.progress(`ratio sluice/postfix (drain msg/s, Sluice's start-up included): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: describeLoad(settings.load),
    sluice: sluice.result,
    postfix,
    ratio,
    ratioAfterStartup: ratioOf(sluice.result.drainAfterReady.perSecond, postfixRate),
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...sluice.problems, ...postfixProblems(postfix, settings.load.messages)],
  };
}

interface DrainSetup extends SluiceSetup {
  settings: DrainSettings;
}

/** Sluice: accept with the next hop down, route everything, stop; sink up, restart, time the drain. */
async function drainSluice(context: BenchContext, settings: DrainSettings) {
  const { workDir, dataDir } = await benchDirectory(context, 'drain');
  const setup: DrainSetup = { workDir, dataDir, nextHopPort: await freePort(), cpuProfileDir: settings.cpuProfileDir, settings };
  const backlog = await queueWhileDown(context, setup);
  const drained = await restartAndDrain(context, setup, backlog.accepted);
  const result = { ...backlog.result, ...drained.result };
  const problems = [...backlog.problems, ...drained.problems];
  return { result, problems };
}

/** Phase 1: the next hop is down; Sluice accepts the load, routes it all (the queue goes to Retry) and stops. */
async function queueWhileDown(context: BenchContext, setup: DrainSetup) {
  const sluice = await startSluice(context, setup);
  context.progress(`sluice on 127.0.0.1:${sluice.port}, relaying to 127.0.0.1:${setup.nextHopPort} where nothing listens yet`);
  const accept = await runLoad({ ...setup.settings.load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
  context.progress(`sluice: ${summary(accept)}`);
  const settle = await settleBacklog(context, sluice, accept.accepted, setup.settings.timeoutMs);
  const stopped = await sluice.stop();
  const queued = countStoredMessages(setup.dataDir);
  const disk = await diskUsage(setup.dataDir);
  context.progress(`sluice stopped in ${stopped.stopSeconds} s with ${queued} messages queued (${disk.allocatedMB} MB on disk); starting the sink and Sluice again`);
  const result = { accept, settle, firstRun: { ...stopped, logged: loggedSummary(sluice.log) }, queued, disk };
  const problems = [...loadProblems('sluice', accept), ...lossProblems(accept.accepted, queued, 0), ...exitProblems('sluice (first run)', stopped.exit, sluice.log)];
  return { result, problems, accepted: accept.accepted };
}

/** Phase 2: the sink comes up and Sluice is restarted (the "retry now" stand-in); timed from the spawn until the sink has them all. */
async function restartAndDrain(context: BenchContext, setup: DrainSetup, accepted: number) {
  const sink = await startSmtpSink(context, setup.nextHopPort);
  const sluice = await startSluice(context, setup);
  context.progress(`sluice restarted: listening after ${sluice.startup.listenerSeconds} s, started after ${sluice.startup.readySeconds} s`);
  const drain = await waitForSink(context, 'sluice', sink, accepted, sluice.spawnedAt, setup.settings.timeoutMs);
  context.progress(`sluice drained ${drain.delivered} in ${drain.seconds} s from its restart = ${drain.perSecond} msg/s`);
  const stopped = await sluice.stop();
  await sink.stop();
  const left = countStoredMessages(setup.dataDir);
  const result = {
    restart: sluice.startup,
    firstDeliverySeconds: secondsAfter(sluice, sink.firstAt()),
    drain,
    drainAfterReady: afterStartup(drain, sluice),
    secondRun: { ...stopped, logged: loggedSummary(sluice.log) },
    storedAfter: left,
  };
  const problems = [
    ...lossProblems(accepted, left, drain.delivered),
    ...exitProblems('sluice (restart)', stopped.exit, sluice.log),
    ...(drain.complete ? [] : [`sluice: the sink had only ${drain.delivered} of ${accepted} after ${drain.seconds} s`]),
  ];
  return { result, problems };
}

/** Waits until the categorizer has routed every accepted message (bounded); the queue is then in Retry. */
async function settleBacklog(context: BenchContext, sluice: SluiceProcess, accepted: number, timeoutMs: number) {
  const started = performance.now();
  const stopReporting = every(10_000, () => context.progress(`sluice: ${sluice.log.routed} of ${accepted} routed`));
  try {
    const complete = await waitUntil(() => sluice.log.routed >= accepted, { signal: context.signal, timeoutMs });
    return { complete, seconds: secondsSince(started), routed: sluice.log.routed, queueRetries: sluice.log.queueRetries };
  } finally {
    stopReporting();
  }
}

function secondsAfter(sluice: SluiceProcess, at: number | undefined): number | null {
  return at === undefined ? null : secondsSince(sluice.spawnedAt, at);
}

/** The drain counted from `sluice started` rather than from the spawn. */
function afterStartup(drain: EndToEnd, sluice: SluiceProcess): { seconds: number; perSecond: number } {
  const seconds = round2(drain.seconds - sluice.startup.readySeconds);
  return { seconds, perSecond: perSecond(drain.delivered, seconds) };
}

async function drainPostfix(context: BenchContext, settings: DrainSettings): Promise<Record<string, unknown>> {
  context.signal.throwIfAborted();
  const lookup = await preparePostfix(context);
  if ('unavailable' in lookup) return { skipped: lookup.unavailable };
  context.defer(() => lookup.peer.emptyQueue()); // what an interrupted run leaves queued (before a stop)
  const { messages, sessions, bodyBytes } = settings.load;
  context.progress(`postfix ${lookup.peer.version}: postfix-relay-bench.sh drain (smtp-source, N=${messages}, ${sessions} sessions, ${bodyBytes} bytes)`);
  const result = await runPostfixScript(context, 'drain', { messages, sessions, bodyBytes, timeoutS: settings.timeoutMs / 1000 });
  if ('drain_msgs_per_s' in result) context.progress(`postfix drained ${String(result.delivered)} in ${String(result.drain_s)} s = ${String(result.drain_msgs_per_s)} msg/s`);
  return result;
}

function postfixProblems(postfix: Record<string, unknown>, messages: number): string[] {
  if ('failed' in postfix) return [`postfix: ${String(postfix.failed)}`];
  if ('delivered' in postfix && postfix.delivered !== messages) return [`postfix: drained only ${String(postfix.delivered)} of ${messages} within the time limit`];
  return [];
}
