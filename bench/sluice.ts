// Sluice as a child process for the benchmarks: a config with one route (`*` → a smart host on
// 127.0.0.1), started from dist/ on a free port read from its `listener started` log line (the
// management API likewise, from `management listening`, with a random token), its JSON log
// tallied line by line, its memory read from /proc, stopped with SIGTERM; and its store counted.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Sqlite from 'better-sqlite3';
import { stopChild } from './peers.js';
import type { BenchStore } from './postgres.js';
import type { BenchContext } from './run.js';
import { memoryOf, secondsSince, type Memory } from './support.js';

/** The `sluice` command as built in dist/. */
export const SLUICE_CLI = fileURLToPath(new URL('../src/cli/index.js', import.meta.url));
/** The one route of a benchmark's Sluice; its smart-host queue has the same name. */
export const NEXT_HOP_ROUTE = 'bench-next-hop';
const STARTUP_TIMEOUT_MS = 120_000;
/** A graceful stop lets deliveries in flight finish; after this long it is a SIGKILL. */
const STOP_GRACE_MS = 60_000;

export interface SluiceSetup {
  /** Where the config file goes. */
  workDir: string;
  dataDir: string;
  /** The route's smart host is 127.0.0.1 on this port: no DNS, nothing leaves the machine. */
  nextHopPort: number;
  /** Directory for V8 CPU profiles (`node --cpu-prof`), if wanted. */
  cpuProfileDir?: string;
  /** The queue store: SQLite in dataDir (the default) or a PostgreSQL schema (bench/postgres.ts). */
  store?: BenchStore;
  /** The node name (`bench` unless given); every node on one PostgreSQL schema needs its own. */
  node?: string;
  /** storage.leaseTimeout (Sluice's default, 30s, unless given), e.g. "5s". */
  leaseTimeout?: string;
  /** The route's maxConnections (20 unless given); with PostgreSQL it holds for the whole cluster. */
  maxConnections?: number;
}

/** What Sluice's log said: one line per message for `received`, `routed` and `delivered`. */
export interface SluiceLog {
  received: number;
  routed: number;
  delivered: number;
  /** `queue in retry` lines (warnings, expected while the next hop is down). */
  queueRetries: number;
  /** `expired leases taken back` lines (warnings: this node took back claims whose lease lapsed, e.g. a dead node's). */
  takenBack: number;
  warnings: number;
  errors: number;
  firstProblems: string[];
}

export interface SluiceProcess {
  pid: number;
  port: number;
  /** performance.now() when the process was spawned. */
  spawnedAt: number;
  /** Seconds from spawn to its `listener started` and `sluice started` log lines. */
  startup: { listenerSeconds: number; readySeconds: number };
  log: SluiceLog;
  /** The management API (`/api/v1/…`): its base URL and bearer token. */
  management: { url: string; token: string };
  memory(): Memory | undefined;
  /** SIGTERM and wait: its exit code (or the signal that ended it) and how long the stop took. */
  stop(): Promise<{ exit: number | string; stopSeconds: number }>;
}

/** Writes the config and starts Sluice; resolves once it logged `sluice started`. */
export async function startSluice(context: BenchContext, setup: SluiceSetup): Promise<SluiceProcess> {
  const configFile = join(setup.workDir, 'sluice.yaml');
  const token = randomBytes(18).toString('base64url');
  await writeFile(configFile, sluiceConfig(setup, token));
  const profiling = setup.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', setup.cpuProfileDir] : [];
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [...profiling, SLUICE_CLI, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = stopper(context, child);
  const log: SluiceLog = { received: 0, routed: 0, delivered: 0, queueRetries: 0, takenBack: 0, warnings: 0, errors: 0, firstProblems: [] };
  const started = await startupOf(child, log, spawnedAt);
  const management = { url: `http://127.0.0.1:${started.managementPort}`, token };
  return { pid: child.pid!, port: started.port, spawnedAt, startup: started.startup, log, management, memory: () => memoryOf(child.pid!), stop };
}

/** A stop function, also registered as a clean-up step (and a SIGKILL should the bench itself exit). */
function stopper(context: BenchContext, child: ChildProcess): SluiceProcess['stop'] {
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stopped: ReturnType<SluiceProcess['stop']> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      const stopStarted = performance.now();
      await stopChild(child, STOP_GRACE_MS);
      process.off('exit', killOnExit);
      return { exit: child.exitCode ?? child.signalCode ?? 'unknown', stopSeconds: secondsSince(stopStarted) };
    })());
  context.defer(stop);
  return stop;
}

/** Reads the log from the start: the listener's and the management API's ports and the start-up times, then keeps tallying. */
function startupOf(child: ChildProcess, log: SluiceLog, spawnedAt: number): Promise<{ port: number; managementPort: number; startup: SluiceProcess['startup'] }> {
  let stderr = '';
  child.stderr!.on('data', (text: Buffer) => (stderr = (stderr + text.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`Sluice did not start: ${why}\n${stderr}`));
    const timer = setTimeout(() => fail(`no "sluice started" within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    child.once('exit', (code, signal) => fail(`exited with ${code ?? signal}`));
    let port: number | undefined;
    let managementPort: number | undefined;
    let listenerSeconds = 0;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      tallyLogLine(line, log);
      if (port === undefined && (port = portLogged(line, 'listener started')) !== undefined) listenerSeconds = secondsSince(spawnedAt);
      managementPort ??= portLogged(line, 'management listening');
      if (line.includes('"msg":"sluice started"')) {
        clearTimeout(timer);
        if (port === undefined || managementPort === undefined) fail('no "listener started" or "management listening" line with a port before "sluice started"');
        else resolve({ port, managementPort, startup: { listenerSeconds, readySeconds: secondsSince(spawnedAt) } });
      }
    });
  });
}

function sluiceConfig(setup: SluiceSetup, managementToken: string): string {
  const { dataDir, nextHopPort, store } = setup;
  const storage = [
    ...(store?.backend === 'postgres' ? ['  backend: postgres', `  postgres: { url: ${JSON.stringify(store.url)}, schema: ${store.schema}${store.poolSize ? `, poolSize: ${store.poolSize}` : ''} }`] : []),
    ...(setup.leaseTimeout ? [`  leaseTimeout: ${setup.leaseTimeout}`] : []),
  ];
  return [
    `node: ${setup.node ?? 'bench'}`,
    'hostname: sluice.bench.test',
    `dataDir: ${JSON.stringify(dataDir)}`,
    ...(storage.length ? ['storage:', ...storage] : []),
    'listeners:',
    '  - { name: bench, listen: "127.0.0.1:0", maxConnections: 1000, maxConnectionsPerIp: 1000 }',
    'relay: { allowFrom: [127.0.0.0/8] }',
    'routes:',
    `  - { name: ${NEXT_HOP_ROUTE}, match: ["*"], smartHosts: ["127.0.0.1:${nextHopPort}"], tls: none, maxConnections: ${setup.maxConnections ?? 20} }`,
    // the default, stated: after a failed connection the queue waits 4 × 1m, then 6 × 5m, then 10m
    'retry: { glitchRetryInterval: 1m }',
    'log: { level: info }',
    // a free port, not the default 8025
    `management: { listen: "127.0.0.1:0", token: ${JSON.stringify(managementToken)} }`,
    '',
  ].join('\n');
}

function portLogged(line: string, message: string): number | undefined {
  if (!line.includes(`"msg":"${message}"`)) return undefined;
  const port = (JSON.parse(line) as { port?: unknown }).port;
  return typeof port === 'number' ? port : undefined;
}

const COUNTED: [string, keyof Pick<SluiceLog, 'received' | 'routed' | 'delivered' | 'queueRetries' | 'takenBack'>][] = [
  ['"msg":"received"', 'received'],
  ['"msg":"routed"', 'routed'],
  ['"msg":"delivered"', 'delivered'],
  ['"msg":"queue in retry"', 'queueRetries'],
  ['"msg":"expired leases taken back"', 'takenBack'],
];

/** Cheap substring checks: Sluice logs a few lines per message and this runs on the load generator's CPU. */
function tallyLogLine(line: string, log: SluiceLog): void {
  for (const [text, counter] of COUNTED) {
    if (line.includes(text)) {
      log[counter]++;
      break;
    }
  }
  const level = /"level":(\d+)/.exec(line)?.[1];
  if (level === undefined || Number(level) < 40) return;
  if (Number(level) >= 50) log.errors++;
  else log.warnings++;
  if (log.firstProblems.length < 5) log.firstProblems.push(line.slice(0, 500));
}

/** A management API request timed out after this long. */
const MANAGEMENT_TIMEOUT_MS = 30_000;

/** One request to Sluice's management API with its bearer token: the parsed JSON answer (throws on a non-2xx status). */
export async function managementRequest(
  context: BenchContext,
  sluice: SluiceProcess,
  method: 'GET' | 'POST',
  path: string,
  body?: Record<string, unknown>,
): Promise<unknown> {
  const url = new URL(path, sluice.management.url);
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${sluice.management.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.any([context.signal, AbortSignal.timeout(MANAGEMENT_TIMEOUT_MS)]),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${url.pathname}: ${response.status} ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/** A queue as `GET /api/v1/queues` lists it (the fields the benchmarks read). */
export interface ListedQueue {
  Identity: string;
  NextHopDomain: string;
  Status: string;
  MessageCount: number;
  LastError: string | null;
  NextRetryTime: string | null;
}

export async function listQueues(context: BenchContext, sluice: SluiceProcess): Promise<ListedQueue[]> {
  return (await managementRequest(context, sluice, 'GET', '/api/v1/queues')) as ListedQueue[];
}

/** Messages in Sluice's queue.db (delivered ones are removed from it); read while Sluice is stopped. */
export function countStoredMessages(dataDir: string): number | string {
  try {
    const db = new Sqlite(join(dataDir, 'queue.db'), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch (error) {
    return `could not count: ${(error as Error).message}`;
  }
}

/** Problems in how a Sluice process ended: a non-zero exit, or errors in its log. */
export function exitProblems(name: string, exit: number | string, log: SluiceLog): string[] {
  const problems: string[] = [];
  if (exit !== 0) problems.push(`${name}: exited with ${exit} after SIGTERM`);
  if (log.errors > 0) problems.push(`${name}: logged ${log.errors} errors, first: ${log.firstProblems.find((l) => /"level":[5-9]\d/.test(l)) ?? ''}`);
  return problems;
}

/** The log tally as it goes into a result: counts, and the first warnings/errors only when there are some. */
export function loggedSummary(log: SluiceLog): Record<string, unknown> {
  const { firstProblems, ...counts } = log;
  return firstProblems.length > 0 ? { ...counts, firstProblems } : counts;
}
