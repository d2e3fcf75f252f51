// The `drain` benchmark: a backlog after an outage. With the next hop down, Sluice accepts N and
// keeps them queued (its queue goes to Retry); then the sink comes up and the benchmark asks the
// running Sluice to retry the queue now (`POST /api/v1/queues/retry`, the analog of `postqueue -f`),
// timed from that request until the sink has all N. With --restart, Sluice is stopped and started
// again before the sink comes up, and the request goes to the new process. Postfix the same with
// the peers' `postfix-relay-bench.sh drain`.
import { benchDirectory, loadProblems, lossProblems, summary, waitForSink } from './measure.js';
import { comparedRunOptions, deliveryTimeoutOption, describeLoad, loadOptions, loadSettings, readOptions, toggle, type LoadSettings } from './options.js';
import { freePort, preparePostfix, runPostfixScript, startSmtpSink, type SmtpSink } from './peers.js';
import type { BenchContext } from './run.js';
import {
  countStoredMessages,
  exitProblems,
  listQueues,
  loggedSummary,
  managementRequest,
  NEXT_HOP_ROUTE,
  startSluice,
  type ListedQueue,
  type SluiceProcess,
  type SluiceSetup,
} from './sluice.js';
import { runLoad } from './smtp-load.js';
import { diskUsage, every, pollUntil, ratioOf, round2, secondsSince } from './support.js';

/** Stage target (issue 11): the drain of 20,000 after the next hop returns at least 2x faster than Postfix. */
const TARGET_RATIO = 2;

export const DRAIN_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  ...deliveryTimeoutOption,
  ...comparedRunOptions,
  restart: toggle('DRAIN_RESTART', '1'),
};

interface DrainSettings {
  load: LoadSettings;
  /** Longest wait for each phase: routing the backlog, draining it. */
  timeoutMs: number;
  cpuProfileDir: string | undefined;
  /** Stop and start Sluice between queueing and the retry request. */
  restart: boolean;
}

export async function runDrain(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, DRAIN_OPTIONS);
  const settings: DrainSettings = { load: loadSettings(values), timeoutMs: values['delivery-timeout'] * 1000, cpuProfileDir: values['cpu-prof'], restart: values.restart };
  context.progress(`N=${settings.load.messages} SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes}${settings.restart ? ' (restart before the retry)' : ''}`);

  const sluice = await drainSluice(context, settings);
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await drainPostfix(context, settings);
  const postfixRate = 'drain_msgs_per_s' in postfix ? (postfix.drain_msgs_per_s as number) : null;
  const ratio = ratioOf(sluice.result.drain.perSecond, postfixRate);
  if (ratio !== null) context.progress(`ratio sluice/postfix (drain msg/s, each from its "retry now"): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: describeLoad(settings.load),
    mode: settings.restart ? 'restart, then retry request' : 'retry request to the running process',
    sluice: sluice.result,
    postfix,
    ratio,
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...sluice.problems, ...postfixProblems(postfix, settings.load.messages)],
  };
}

interface DrainSetup extends SluiceSetup {
  settings: DrainSettings;
}

/** Sluice: accept with the next hop down until all is queued; (restart;) sink up, retry request, time the drain. */
async function drainSluice(context: BenchContext, settings: DrainSettings) {
  const { workDir, dataDir } = await benchDirectory(context, 'drain');
  const setup: DrainSetup = { workDir, dataDir, nextHopPort: await freePort(), cpuProfileDir: settings.cpuProfileDir, settings };
  const first = await startSluice(context, setup);
  const backlog = await queueWhileDown(context, first, setup);
  const between = settings.restart ? await restart(context, first, setup) : await keepRunning(context, first, setup, backlog.queue);
  const drained = await retryAndDrain(context, between.sluice, between.sink, setup, backlog.accepted);
  const result = { ...backlog.result, ...between.result, ...drained.result };
  const problems = [...backlog.problems, ...lossProblems(backlog.accepted, between.queued, 0), ...between.problems, ...drained.problems];
  return { result, problems };
}

/** Phase 1: the next hop is down; Sluice accepts the load and routes it all to the queue, which goes to Retry. */
async function queueWhileDown(context: BenchContext, sluice: SluiceProcess, setup: DrainSetup) {
  context.progress(`sluice on 127.0.0.1:${sluice.port}, relaying to 127.0.0.1:${setup.nextHopPort} where nothing listens yet`);
  const accept = await runLoad({ ...setup.settings.load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
  context.progress(`sluice: ${summary(accept)}`);
  const settle = await settleBacklog(context, sluice, accept.accepted, setup.settings.timeoutMs);
  const problems = [...loadProblems('sluice', accept), ...(settle.complete ? [] : [`sluice: the backlog was not all queued in Retry within ${setup.settings.timeoutMs / 1000} s: ${JSON.stringify(settle.queue)}`])];
  return { result: { accept, settle }, problems, accepted: accept.accepted, queue: settle.queue };
}

/**
 * Waits (bounded) until `GET /api/v1/queues` shows Submission empty and the route's queue holding every
 * accepted message, in Retry (its first connection was refused): nothing is left to happen until the retry.
 */
async function settleBacklog(context: BenchContext, sluice: SluiceProcess, accepted: number, timeoutMs: number) {
  const started = performance.now();
  let submission: number | null = null;
  let queue: ListedQueue | undefined;
  const stopReporting = every(10_000, () => context.progress(`sluice: Submission ${submission}, ${NEXT_HOP_ROUTE} ${queue?.MessageCount ?? 0} (${queue?.Status ?? 'not listed'}) of ${accepted}`));
  try {
    const complete = await pollUntil(
      async () => {
        const queues = await listQueues(context, sluice);
        submission = queues.find((q) => q.NextHopDomain === 'Submission')?.MessageCount ?? null;
        queue = queues.find((q) => q.NextHopDomain === NEXT_HOP_ROUTE);
        return submission === 0 && queue !== undefined && queue.MessageCount >= accepted && queue.Status === 'Retry';
      },
      { signal: context.signal, timeoutMs },
    );
    return { complete, seconds: secondsSince(started), queue: queue ?? null, queueRetries: sluice.log.queueRetries };
  } finally {
    stopReporting();
  }
}

/** Default: the same process stays up; the sink comes up on the dead port. */
async function keepRunning(context: BenchContext, sluice: SluiceProcess, setup: DrainSetup, queue: ListedQueue | null) {
  const disk = await diskUsage(setup.dataDir);
  const queued = queue?.MessageCount ?? 'not listed';
  const sink = await startSmtpSink(context, setup.nextHopPort);
  context.progress(`${queued} messages queued (${disk.allocatedMB} MB on disk, Sluice running); the sink is up on ${setup.nextHopPort}`);
  return { sluice, sink, queued, result: { queued, disk }, problems: [] as string[] };
}

/** --restart: SIGTERM (the backlog counted and measured while Sluice is stopped), the sink comes up, Sluice starts again. */
async function restart(context: BenchContext, first: SluiceProcess, setup: DrainSetup) {
  const stopped = await first.stop();
  const queued = countStoredMessages(setup.dataDir);
  const disk = await diskUsage(setup.dataDir);
  context.progress(`sluice stopped in ${stopped.stopSeconds} s with ${queued} messages queued (${disk.allocatedMB} MB on disk); starting the sink and Sluice again`);
  const sink = await startSmtpSink(context, setup.nextHopPort);
  const sluice = await startSluice(context, setup);
  context.progress(`sluice restarted: listening after ${sluice.startup.listenerSeconds} s, started after ${sluice.startup.readySeconds} s`);
  const result = { firstRun: { ...stopped, logged: loggedSummary(first.log) }, queued, disk, restart: sluice.startup };
  return { sluice, sink, queued, result, problems: exitProblems('sluice (first run)', stopped.exit, first.log) };
}

/** Phase 2: the sink is up; `POST /api/v1/queues/retry` for the route's queue, timed from the request until the sink has them all. */
async function retryAndDrain(context: BenchContext, sluice: SluiceProcess, sink: SmtpSink, setup: DrainSetup, accepted: number) {
  const queue = (await listQueues(context, sluice)).find((q) => q.NextHopDomain === NEXT_HOP_ROUTE);
  const before = { status: queue?.Status ?? null, messageCount: queue?.MessageCount ?? null, nextRetryTime: queue?.NextRetryTime ?? null, atSink: sink.received() };
  const identity = queue?.Identity ?? NEXT_HOP_ROUTE;
  const requestedAt = performance.now();
  const answer = (await managementRequest(context, sluice, 'POST', '/api/v1/queues/retry', { identity })) as { queues?: { Identity: string; Messages?: number }[] };
  const request = { identity, answeredMs: round2(performance.now() - requestedAt), answer: answer.queues ?? answer };
  context.progress(`retry requested for ${identity} (queue ${before.status}, ${before.messageCount} messages; answered in ${request.answeredMs} ms)`);
  const drain = await waitForSink(context, 'sluice', sink, accepted, requestedAt, setup.settings.timeoutMs);
  context.progress(`sluice drained ${drain.delivered} in ${drain.seconds} s from the retry request = ${drain.perSecond} msg/s`);
  const firstAt = sink.firstAt();
  const stopped = await sluice.stop();
  await sink.stop();
  const delivered = sink.received();
  const left = countStoredMessages(setup.dataDir);
  const result = {
    beforeRetry: before,
    retryRequest: request,
    firstDeliverySeconds: firstAt === undefined ? null : secondsSince(requestedAt, firstAt),
    drain,
    lastRun: { ...stopped, logged: loggedSummary(sluice.log) },
    delivered,
    storedAfter: left,
  };
  const problems = [
    ...(before.atSink > 0 ? [`sluice: the sink had ${before.atSink} before the retry request (Sluice retried on its own): the drain is not timed from the request`] : []),
    ...lossProblems(accepted, left, delivered),
    ...(delivered > accepted ? [`sluice: the sink got ${delivered} messages for ${accepted} accepted (duplicates)`] : []),
    ...exitProblems(setup.settings.restart ? 'sluice (restart)' : 'sluice', stopped.exit, sluice.log),
    ...(drain.complete ? [] : [`sluice: the sink had only ${drain.delivered} of ${accepted} after ${drain.seconds} s`]),
  ];
  return { result, problems };
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
