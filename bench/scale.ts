// The `scale` benchmark: a large backlog for a dead next hop (a smart host where nothing listens).
// Sluice accepts SCALE_N small messages (1,000,000 by default) while its memory (VmRSS/VmHWM) and
// data directory are watched; then SIGTERM, the sink comes up on that port, Sluice is restarted
// and timed to its first delivered message. It does not drain the backlog (only a short window).
import { setTimeout as sleep } from 'node:timers/promises';
import { benchDirectory, loadProblems, lossProblems, reportIntake, summary } from './measure.js';
import { deliveryTimeoutOption, describeLoad, integer, loadOptions, loadSettings, readOptions, text, type LoadSettings } from './options.js';
import { freePort, startSmtpSink, type SmtpSink } from './peers.js';
import type { BenchContext } from './run.js';
import { countStoredMessages, exitProblems, loggedSummary, startSluice, type SluiceProcess } from './sluice.js';
import { runLoad } from './smtp-load.js';
import { diskUsage, perSecond, secondsSince, waitUntil } from './support.js';

/** Targets at this stage: memory with the whole backlog queued, and the first delivery after a restart. */
const TARGET_RSS_MIB = 500;
const TARGET_FIRST_DELIVERY_S = 10;

export const SCALE_OPTIONS = {
  ...loadOptions({ n: 1_000_000, sessions: 100, size: 1024 }, 'SCALE_'),
  ...deliveryTimeoutOption,
  'drain-window': integer('SCALE_DRAIN_WINDOW_S', 10),
  'cpu-prof': text('SLUICE_CPU_PROF'),
};

interface ScaleSettings {
  load: LoadSettings;
  /** Longest wait for routing the backlog, and for the first delivery after the restart. */
  timeoutMs: number;
  /** After the first delivery, how long to let the restarted Sluice deliver before stopping it. */
  drainWindowMs: number;
  cpuProfileDir: string | undefined;
}

export async function runScale(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, SCALE_OPTIONS);
  const settings: ScaleSettings = {
    load: loadSettings(values),
    timeoutMs: values['delivery-timeout'] * 1000,
    drainWindowMs: values['drain-window'] * 1000,
    cpuProfileDir: values['cpu-prof'],
  };
  context.progress(`N=${settings.load.messages} SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes}`);
  const { workDir, dataDir } = await benchDirectory(context, 'scale');
  const deadPort = await freePort();
  const setup = { workDir, dataDir, nextHopPort: deadPort, cpuProfileDir: settings.cpuProfileDir };

  const backlog = await queueBacklog(context, await startSluice(context, setup), settings);
  const queued = countStoredMessages(dataDir);
  const disk = await diskUsage(dataDir);
  context.progress(`${queued} messages queued, data directory ${disk.allocatedMB} MB; starting the sink on 127.0.0.1:${deadPort} and Sluice again`);

  const sink = await startSmtpSink(context, deadPort);
  const restart = await firstDelivery(context, await startSluice(context, setup), sink, settings);
  await sink.stop();
  const memoryOk = backlog.memory !== undefined && backlog.memory.peakMiB <= TARGET_RSS_MIB;
  const firstOk = restart.firstDeliverySeconds !== null && restart.firstDeliverySeconds <= TARGET_FIRST_DELIVERY_S;
  return {
    load: describeLoad(settings.load),
    sluice: { ...backlog.result, queued, disk, restart: restart.result },
    targets: { peakRssMiB: TARGET_RSS_MIB, firstDeliverySeconds: TARGET_FIRST_DELIVERY_S },
    meetsTargets: { memory: memoryOk, firstDelivery: firstOk },
    problems: [...backlog.problems, ...lossProblems(backlog.accepted, queued, 0), ...restart.problems],
  };
}

/** Loads Sluice with the next hop dead, waits until the backlog is routed, reads its memory, stops it. */
async function queueBacklog(context: BenchContext, sluice: SluiceProcess, settings: ScaleSettings) {
  context.progress(`sluice on 127.0.0.1:${sluice.port} (pid ${sluice.pid}); its next hop is dead`);
  const stopReporting = reportIntake(context, sluice);
  try {
    const accept = await runLoad({ ...settings.load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
    context.progress(`sluice: ${summary(accept)}`);
    const settleStarted = performance.now();
    const routed = await waitUntil(() => sluice.log.routed >= accept.accepted, { signal: context.signal, timeoutMs: settings.timeoutMs, everyMs: 200 });
    const settle = { complete: routed, seconds: secondsSince(settleStarted), routed: sluice.log.routed };
    const memory = sluice.memory();
    stopReporting();
    const stopped = await sluice.stop();
    const result = { accept, settle, memory, exit: stopped.exit, stopSeconds: stopped.stopSeconds, logged: loggedSummary(sluice.log) };
    const problems = [...loadProblems('sluice', accept), ...exitProblems('sluice (backlog)', stopped.exit, sluice.log)];
    return { result, memory, accepted: accept.accepted, problems };
  } finally {
    stopReporting();
  }
}

/** The restarted Sluice: time from spawn to the first message at the sink, a short drain window, stop. */
async function firstDelivery(context: BenchContext, sluice: SluiceProcess, sink: SmtpSink, settings: ScaleSettings) {
  context.progress(`sluice restarted (pid ${sluice.pid}): listening after ${sluice.startup.listenerSeconds} s, started after ${sluice.startup.readySeconds} s`);
  const arrived = await waitUntil(() => sink.received() > 0, { signal: context.signal, timeoutMs: settings.timeoutMs, everyMs: 5 });
  const firstAt = sink.firstAt();
  const firstDeliverySeconds = arrived && firstAt !== undefined ? secondsSince(sluice.spawnedAt, firstAt) : null;
  context.progress(`first delivery ${firstDeliverySeconds ?? 'never'} s after the restart; delivering for ${settings.drainWindowMs / 1000} s more`);
  if (arrived) await sleep(settings.drainWindowMs, undefined, { signal: context.signal });
  const window = firstAt === undefined ? null : { delivered: sink.received(), seconds: secondsSince(firstAt), perSecond: perSecond(sink.received(), secondsSince(firstAt)) };
  const memory = sluice.memory();
  const stopped = await sluice.stop();
  const result = { startup: sluice.startup, firstDeliverySeconds, window, memory, exit: stopped.exit, stopSeconds: stopped.stopSeconds, logged: loggedSummary(sluice.log) };
  const problems = [...exitProblems('sluice (restart)', stopped.exit, sluice.log), ...(arrived ? [] : [`sluice: no delivery within ${settings.timeoutMs / 1000} s of the restart`])];
  return { result, firstDeliverySeconds, problems };
}
