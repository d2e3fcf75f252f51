// The `intake` benchmark: how fast Sluice accepts mail (its 250 comes after the fsync) and how
// long each 250 takes, then Postfix under the very same load in the same run, one after the
// other so they never share the CPU; the headline is the ratio of accepted msg/s. Both relay
// everything to a local smtp-sink meanwhile (or, with --no-sink, to a closed port: they defer).
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Sqlite from 'better-sqlite3';
import { filesystemType, freePort, preparePostfix, smtpSinkAvailable, startSmtpSink, stopChild, type SmtpSink } from './peers.js';
import type { BenchContext } from './run.js';
import { runLoad, type LoadOptions, type LoadResult } from './smtp-load.js';

const SLUICE_CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
const STARTUP_TIMEOUT_MS = 30_000;
/** Stage target: Sluice accepts at least this many times as many msg/s as Postfix. */
const TARGET_RATIO = 2;

interface IntakeOptions {
  load: Omit<LoadOptions, 'host' | 'port' | 'signal'>;
  comparePostfix: boolean;
  /** Relay to smtp-sink (both servers deliver during the run) rather than to nothing (both defer). */
  sink: boolean;
  /** Directory for Sluice's V8 CPU profile (node --cpu-prof), if wanted. */
  cpuProfileDir: string | undefined;
}

export async function runIntake(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const options = readOptions(context);
  const { messages, sessions, bodyBytes, pipelining } = options.load;
  context.progress(`N=${messages} SESSIONS=${sessions} SIZE=${bodyBytes} pipelining=${pipelining}`);

  const sluice = await measureSluice(context, options);
  context.progress(`sluice: ${summary(sluice.load)}`);
  const postfix = options.comparePostfix ? await measurePostfix(context, options) : { skipped: 'disabled (--sluice-only)' };
  if ('load' in postfix) context.progress(`postfix: ${summary(postfix.load)}`);
  else context.progress(`postfix skipped: ${postfix.skipped}`);

  const ratio = 'load' in postfix ? round2(sluice.load.acceptedPerSecond / postfix.load.acceptedPerSecond) : null;
  if (ratio !== null) context.progress(`ratio sluice/postfix (accepted msg/s): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: { messages, sessions, bodyBytes, pipelining, replyTimeoutMs: options.load.replyTimeoutMs },
    sluice: { ...sluice.load, ...sluice.details },
    postfix: 'load' in postfix ? { ...postfix.load, ...postfix.details } : postfix,
    ratio,
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...loadProblems('sluice', sluice.load), ...sluiceProblems(sluice), ...('load' in postfix ? loadProblems('postfix', postfix.load) : [])],
  };
}

function loadProblems(name: string, load: LoadResult): string[] {
  if (load.failures === 0) return [];
  const reasons = load.errors.map((e) => `${e.messages}× ${e.reason}`).join('; ');
  return [`${name}: ${load.failures} of ${load.messages} messages not accepted (${reasons})`];
}

/** Sluice lost an accepted message, did not stop cleanly, or logged errors. */
function sluiceProblems({ load, details }: Measured<SluiceDetails>): string[] {
  const problems: string[] = [];
  if (typeof details.stored !== 'number') problems.push(`sluice: store not counted: ${details.stored}`);
  else if (details.stored + details.delivered < load.accepted) {
    problems.push(`sluice: accepted ${load.accepted}, but only ${details.stored} are stored and ${details.delivered} were delivered`);
  }
  if (details.exit !== 0) problems.push(`sluice: exited with ${details.exit} after SIGTERM`);
  if (details.logged.errors > 0) problems.push(`sluice: logged ${details.logged.errors} errors, first: ${details.logged.firstProblems[0] ?? ''}`);
  return problems;
}

export const INTAKE_FLAGS =
  '[--n N] [--sessions S] [--size BYTES] [--reply-timeout SECONDS] [--no-pipelining] [--no-sink] [--sluice-only] [--cpu-prof DIR]';

function readOptions(context: BenchContext): IntakeOptions {
  const values = parseFlags(context);
  const env = context.env;
  const number = (name: string, text: string) => positiveInteger(context, name, text);
  return {
    load: {
      messages: number('N', values.n ?? env.N ?? '20000'),
      sessions: number('SESSIONS', values.sessions ?? env.SESSIONS ?? '20'),
      bodyBytes: number('SIZE', values.size ?? env.SIZE ?? '5120'),
      replyTimeoutMs: number('REPLY_TIMEOUT_S', values['reply-timeout'] ?? env.REPLY_TIMEOUT_S ?? '30') * 1000,
      pipelining: !(values['no-pipelining'] ?? env.PIPELINING === '0'),
    },
    comparePostfix: !(values['sluice-only'] ?? env.SLUICE_ONLY === '1'),
    sink: !(values['no-sink'] ?? env.SINK === '0'),
    cpuProfileDir: values['cpu-prof'] ?? env.SLUICE_CPU_PROF,
  };
}

function parseFlags(context: BenchContext) {
  const options = {
    n: { type: 'string' },
    sessions: { type: 'string' },
    size: { type: 'string' },
    'reply-timeout': { type: 'string' },
    'no-pipelining': { type: 'boolean' },
    'sluice-only': { type: 'boolean' },
    'no-sink': { type: 'boolean' },
    'cpu-prof': { type: 'string' },
  } as const;
  try {
    return parseArgs({ args: context.args, options }).values;
  } catch (error) {
    throw context.usageError((error as Error).message);
  }
}

function positiveInteger(context: BenchContext, name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw context.usageError(`${name} must be a positive integer, got "${text}"`);
  return value;
}

interface Measured<Details = Record<string, unknown>> {
  load: LoadResult;
  details: Details;
}

interface SluiceDetails {
  delivery: 'smtp-sink' | 'deferred';
  deliveredDuringLoad: number;
  /** Messages the sink had once Sluice stopped. */
  delivered: number;
  /** Messages still in Sluice's queue once it stopped, or why they could not be counted. */
  stored: number | string;
  logged: SluiceLog;
  exit: number | string;
  /** From SIGTERM to its exit (a graceful stop lets deliveries in flight finish). */
  stopSeconds: number;
  filesystem: string;
  cpuProfileDir?: string;
}

/**
 * Sluice on a free port with a fresh data directory, relaying to its own sink; loaded, stopped,
 * then counted: what it still stores plus what the sink got must cover every 250.
 */
async function measureSluice(context: BenchContext, options: IntakeOptions): Promise<Measured<SluiceDetails>> {
  const workDir = await mkdtemp(join(tmpdir(), 'sluice-bench-intake-'));
  context.defer(() => rm(workDir, { recursive: true, force: true }));
  const dataDir = join(workDir, 'data');
  const nextHop = await sluiceNextHop(context, options.sink);
  const sluice = await startSluice(context, { workDir, dataDir, nextHopPort: nextHop.port, cpuProfileDir: options.cpuProfileDir });
  context.progress(`sluice on 127.0.0.1:${sluice.port} (data in ${dataDir}), relaying to 127.0.0.1:${nextHop.port}${nextHop.sink ? ' (smtp-sink)' : ' (nothing listens: it defers)'}`);
  const load = await runLoad({ ...options.load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
  const deliveredDuringLoad = nextHop.sink?.received() ?? 0;
  const stopStarted = performance.now();
  const exit = await sluice.stop();
  const stopSeconds = round2((performance.now() - stopStarted) / 1000);
  await nextHop.sink?.stop();
  return {
    load,
    details: {
      delivery: nextHop.sink ? 'smtp-sink' : 'deferred',
      deliveredDuringLoad,
      delivered: nextHop.sink?.received() ?? 0,
      stored: countStoredMessages(join(dataDir, 'queue.db')),
      logged: sluice.log,
      exit,
      stopSeconds,
      filesystem: await filesystemType(workDir),
      ...(options.cpuProfileDir ? { cpuProfileDir: options.cpuProfileDir } : {}),
    },
  };
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

/** Postfix after Sluice has stopped: sink behind it, empty queue, the same load, queue emptied again. */
async function measurePostfix(context: BenchContext, options: IntakeOptions): Promise<Measured | { skipped: string }> {
  context.signal.throwIfAborted();
  const lookup = await preparePostfix(context);
  if ('unavailable' in lookup) return { skipped: lookup.unavailable };
  const postfix = lookup.peer;
  const sink = options.sink ? await postfix.startSink() : undefined;
  const delivery = !options.sink ? 'deferred' : sink ? 'smtp-sink' : 'whatever listens on SINK_PORT';
  await postfix.emptyQueue();
  context.progress(`postfix ${postfix.version} on ${postfix.host}:${postfix.port}, next hop: ${delivery}`);
  try {
    const load = await runLoad({ ...options.load, host: postfix.host, port: postfix.port, signal: context.signal });
    return {
      load,
      details: {
        version: postfix.version,
        delivery,
        deliveredDuringLoad: sink?.received() ?? null,
        startedByBench: postfix.startedByBench,
        filesystem: await filesystemType(postfix.queueDirectory),
      },
    };
  } finally {
    // empty first: with the sink gone, Postfix would mark it dead and defer what it still holds
    await postfix.emptyQueue();
    await sink?.stop();
  }
}

/** What Sluice wrote on stdout that deserves a look: warnings and errors, and "received" lines. */
interface SluiceLog {
  received: number;
  warnings: number;
  errors: number;
  firstProblems: string[];
}

interface SluiceProcess {
  port: number;
  log: SluiceLog;
  /** SIGTERM and wait: its exit code, or the signal that ended it. */
  stop(): Promise<number | string>;
}

interface SluiceSetup {
  workDir: string;
  dataDir: string;
  /** Every route leads to 127.0.0.1 on this port: no DNS, nothing leaves the machine. */
  nextHopPort: number;
  cpuProfileDir: string | undefined;
}

async function startSluice(context: BenchContext, setup: SluiceSetup): Promise<SluiceProcess> {
  const { workDir, dataDir, nextHopPort, cpuProfileDir } = setup;
  const configFile = join(workDir, 'sluice.yaml');
  await writeFile(configFile, sluiceConfig(dataDir, nextHopPort));
  const profiling = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : [];
  const child = spawn(process.execPath, [...profiling, SLUICE_CLI, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async () => {
    await stopChild(child, 30_000);
    process.off('exit', killOnExit);
    return child.exitCode ?? child.signalCode ?? 'unknown';
  };
  context.defer(stop);

  let stderr = '';
  child.stderr.on('data', (text: Buffer) => (stderr = (stderr + text.toString()).slice(-4000)));
  const log: SluiceLog = { received: 0, warnings: 0, errors: 0, firstProblems: [] };
  const port = await new Promise<number>((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`Sluice did not start: ${why}\n${stderr}`));
    const timer = setTimeout(() => fail(`no "listener started" within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    child.once('exit', (code, signal) => fail(`exited with ${code ?? signal}`));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const started = listenerPort(line);
      if (started !== undefined) {
        clearTimeout(timer);
        resolve(started);
      }
      tallyLogLine(line, log);
    });
  });
  return { port, log, stop };
}

function sluiceConfig(dataDir: string, nextHopPort: number): string {
  return [
    'node: bench',
    'hostname: sluice.bench.test',
    `dataDir: ${JSON.stringify(dataDir)}`,
    'listeners:',
    '  - name: bench',
    '    listen: 127.0.0.1:0',
    '    maxConnections: 1000',
    '    maxConnectionsPerIp: 1000',
    'relay:',
    '  allowFrom: [127.0.0.0/8]',
    'routes:',
    '  - name: bench-next-hop',
    "    match: ['*']",
    `    smartHosts: ['127.0.0.1:${nextHopPort}']`,
    '    tls: none',
    'log: { level: info }',
    '',
  ].join('\n');
}

function listenerPort(line: string): number | undefined {
  if (!line.includes('"msg":"listener started"')) return undefined;
  const port = (JSON.parse(line) as { port?: unknown }).port;
  return typeof port === 'number' ? port : undefined;
}

/** Cheap substring checks: Sluice logs one line per message and this runs on the load generator's CPU. */
function tallyLogLine(line: string, log: SluiceLog): void {
  if (line.includes('"msg":"received"')) log.received++;
  const level = /"level":(\d+)/.exec(line)?.[1];
  if (level === undefined || Number(level) < 40) return;
  if (Number(level) >= 50) log.errors++;
  else log.warnings++;
  if (log.firstProblems.length < 5) log.firstProblems.push(line.slice(0, 500));
}

/** Messages still in Sluice's queue after it stopped (delivered ones are removed from it). */
function countStoredMessages(databaseFile: string): number | string {
  try {
    const db = new Sqlite(databaseFile, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch (error) {
    return `could not count: ${(error as Error).message}`;
  }
}

function summary(load: LoadResult): string {
  const { p50, p99 } = load.latencyMs;
  return `${load.acceptedPerSecond} msg/s accepted (${load.accepted}/${load.messages} in ${load.wallSeconds} s), p50 ${p50} ms, p99 ${p99} ms, failures ${load.failures}`;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
