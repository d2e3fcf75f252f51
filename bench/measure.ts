// One server under one load, as `intake` and `relay` measure it: Sluice (fresh data directory,
// its own smtp-sink on a free port) or Postfix (smtp-sink on SINK_PORT), loaded by the same
// generator, and optionally timed until the sink has every accepted message (end to end).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadSettings } from './options.js';
import { filesystemType, freePort, preparePostfix, smtpSinkAvailable, startSmtpSink, type SmtpSink } from './peers.js';
import { countStoredMessagesPg, createBenchSchema, shownUrl, type BenchStore, type StoreName } from './postgres.js';
import type { BenchContext } from './run.js';
import { countStoredMessages, exitProblems, loggedSummary, startSluice, type SluiceProcess } from './sluice.js';
import { runLoad, type LoadResult } from './smtp-load.js';
import { every, perSecond, secondsSince, waitUntil, type Memory } from './support.js';

const PROGRESS_EVERY_MS = 10_000;

export interface RunSettings {
  load: LoadSettings;
  /** Relay to smtp-sink (both servers deliver) rather than to a port where nothing listens (both defer). */
  sink: boolean;
  /** After the load, wait at most this long until the sink has every accepted message; 0: do not wait. */
  endToEndTimeoutMs: number;
  /** Directory for Sluice's V8 CPU profiles, if wanted. */
  cpuProfileDir?: string;
  /** Sluice's queue store: SQLite in its data directory (the default) or a fresh PostgreSQL schema. */
  store?: StoreName;
}

/** From the start of the load until the sink had every accepted message (or the wait gave up). */
export interface EndToEnd {
  delivered: number;
  complete: boolean;
  seconds: number;
  perSecond: number;
}

export interface Measured {
  load: LoadResult;
  endToEnd?: EndToEnd;
  details: Record<string, unknown>;
  problems: string[];
}

/** Temporary directory for one benchmark's Sluice, removed at clean-up. */
export async function benchDirectory(context: BenchContext, name: string): Promise<{ workDir: string; dataDir: string }> {
  const workDir = await mkdtemp(join(tmpdir(), `sluice-bench-${name}-`));
  context.defer(() => rm(workDir, { recursive: true, force: true }));
  return { workDir, dataDir: join(workDir, 'data') };
}

/** Sluice with a fresh data directory, loaded, maybe waited for, stopped; then its store and sink are counted. */
export async function measureSluice(context: BenchContext, name: string, settings: RunSettings): Promise<Measured> {
  const { workDir, dataDir } = await benchDirectory(context, name);
  const nextHop = await sluiceNextHop(context, settings.sink);
  // the schema's DROP is registered before Sluice's stop, so it runs after it
  const store: BenchStore = settings.store === 'postgres' ? await createBenchSchema(context, name) : { backend: 'sqlite' };
  const sluice = await startSluice(context, { workDir, dataDir, nextHopPort: nextHop.port, cpuProfileDir: settings.cpuProfileDir, store });
  const where = store.backend === 'postgres' ? `queue in PostgreSQL schema ${store.schema}` : `data in ${dataDir}`;
  context.progress(`sluice on 127.0.0.1:${sluice.port} (${where}), relaying to 127.0.0.1:${nextHop.port}${nextHop.sink ? ' (smtp-sink)' : ' (nothing listens: it defers)'}`);
  const started = performance.now();
  const load = await runLoad({ ...settings.load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
  const deliveredDuringLoad = nextHop.sink?.received() ?? 0;
  const endToEnd = await maybeWaitForSink(context, 'sluice', nextHop.sink, load, started, settings);
  const { exit, stopSeconds } = await sluice.stop();
  await nextHop.sink?.stop();
  const delivered = nextHop.sink?.received() ?? 0;
  const stored = store.backend === 'postgres' ? await countStoredMessagesPg(store) : countStoredMessages(dataDir);
  const details = {
    store: store.backend === 'postgres' ? { backend: 'postgres', url: shownUrl(store.url), schema: store.schema, poolSize: store.poolSize ?? 'default (8)' } : { backend: 'sqlite' },
    delivery: nextHop.sink ? 'smtp-sink' : 'deferred',
    startup: sluice.startup,
    deliveredDuringLoad,
    delivered,
    stored,
    logged: loggedSummary(sluice.log),
    exit,
    stopSeconds,
    filesystem: await filesystemType(workDir),
    ...(settings.cpuProfileDir ? { cpuProfileDir: settings.cpuProfileDir } : {}),
  };
  const problems = [...loadProblems('sluice', load), ...lossProblems(load.accepted, stored, delivered), ...exitProblems('sluice', exit, sluice.log), ...endToEndProblems('sluice', endToEnd)];
  return { load, ...(endToEnd ? { endToEnd } : {}), details, problems };
}

/** Where Sluice relays to: a fresh smtp-sink on a free port, or a free port nobody listens on. */
async function sluiceNextHop(context: BenchContext, wantSink: boolean): Promise<{ port: number; sink?: SmtpSink }> {
  if (wantSink && (await smtpSinkAvailable())) {
    const sink = await startSmtpSink(context);
    return { port: sink.port, sink };
  }
  if (wantSink) context.progress('smtp-sink is not installed (it comes with Postfix): Sluice defers instead of delivering');
  return { port: await freePort() };
}

/** Postfix (after Sluice has stopped): sink behind it, empty queue, the same load, queue emptied again. */
export async function measurePostfix(context: BenchContext, settings: RunSettings): Promise<Measured | { skipped: string }> {
  context.signal.throwIfAborted();
  const lookup = await preparePostfix(context);
  if ('unavailable' in lookup) return { skipped: lookup.unavailable };
  const postfix = lookup.peer;
  const sink = settings.sink ? await postfix.startSink() : undefined;
  const delivery = !settings.sink ? 'deferred' : sink ? 'smtp-sink' : 'whatever listens on SINK_PORT';
  await postfix.emptyQueue();
  context.progress(`postfix ${postfix.version} on ${postfix.host}:${postfix.port}, next hop: ${delivery}`);
  try {
    const started = performance.now();
    const load = await runLoad({ ...settings.load, host: postfix.host, port: postfix.port, signal: context.signal });
    const deliveredDuringLoad = sink?.received() ?? null;
    const endToEnd = await maybeWaitForSink(context, 'postfix', sink, load, started, settings);
    const details = {
      version: postfix.version,
      delivery,
      deliveredDuringLoad,
      startedByBench: postfix.startedByBench,
      filesystem: await filesystemType(postfix.queueDirectory),
    };
    return { load, ...(endToEnd ? { endToEnd } : {}), details, problems: [...loadProblems('postfix', load), ...endToEndProblems('postfix', endToEnd)] };
  } finally {
    // empty first: with the sink gone, Postfix would mark it dead and defer what it still holds
    await postfix.emptyQueue();
    await sink?.stop();
  }
}

async function maybeWaitForSink(context: BenchContext, name: string, sink: SmtpSink | undefined, load: LoadResult, startedAt: number, settings: RunSettings): Promise<EndToEnd | undefined> {
  if (!sink || settings.endToEndTimeoutMs <= 0) return undefined;
  context.progress(`${name}: ${load.accepted} accepted in ${load.wallSeconds} s; waiting until the sink has them all (${sink.received()} so far)`);
  return waitForSink(context, name, sink, load.accepted, startedAt, settings.endToEndTimeoutMs);
}

/** Waits (bounded, with progress) until `sink` has `expected` messages; the time counts from `startedAt`. */
export async function waitForSink(context: BenchContext, name: string, sink: SmtpSink, expected: number, startedAt: number, timeoutMs: number): Promise<EndToEnd> {
  const stopReporting = every(PROGRESS_EVERY_MS, () => context.progress(`${name}: the sink has ${sink.received()} of ${expected}`));
  let complete: boolean;
  try {
    complete = await waitUntil(() => sink.received() >= expected, { signal: context.signal, timeoutMs });
  } finally {
    stopReporting();
  }
  const delivered = sink.received();
  const seconds = secondsSince(startedAt, complete ? (sink.lastAt() ?? performance.now()) : performance.now());
  return { delivered, complete, seconds, perSecond: perSecond(delivered, seconds) };
}

export function loadProblems(name: string, load: LoadResult): string[] {
  if (load.failures === 0) return [];
  const reasons = load.errors.map((e) => `${e.messages}× ${e.reason}`).join('; ');
  return [`${name}: ${load.failures} of ${load.messages} messages not accepted (${reasons})`];
}

/** Every accepted message must still be stored or have reached the sink. */
export function lossProblems(accepted: number, stored: number | string, delivered: number): string[] {
  if (typeof stored !== 'number') return [`sluice: store not counted: ${stored}`];
  if (stored + delivered >= accepted) return [];
  return [`sluice: accepted ${accepted}, but only ${stored} are stored and ${delivered} were delivered`];
}

export function endToEndProblems(name: string, endToEnd: EndToEnd | undefined): string[] {
  if (!endToEnd || endToEnd.complete) return [];
  return [`${name}: the sink had only ${endToEnd.delivered} messages when the wait ended after ${endToEnd.seconds} s`];
}

/** Every 10 s: accepted so far (the `received` log lines) and the rate since the last line, routed, memory. */
export function reportIntake(context: BenchContext, sluice: SluiceProcess): () => void {
  let last = { at: performance.now(), received: 0 };
  return every(PROGRESS_EVERY_MS, () => {
    const now = { at: performance.now(), received: sluice.log.received };
    const rate = perSecond(now.received - last.received, (now.at - last.at) / 1000);
    last = now;
    context.progress(`accepted ${now.received} (${rate} msg/s), routed ${sluice.log.routed}, ${memoryText(sluice.memory())}`);
  });
}

function memoryText(memory: Memory | undefined): string {
  return memory ? `RSS ${memory.rssMiB} MiB (peak ${memory.peakMiB} MiB)` : 'process gone';
}

export function summary(load: LoadResult): string {
  const { p50, p99 } = load.latencyMs;
  return `${load.acceptedPerSecond} msg/s accepted (${load.accepted}/${load.messages} in ${load.wallSeconds} s), p50 ${p50} ms, p99 ${p99} ms, failures ${load.failures}`;
}
