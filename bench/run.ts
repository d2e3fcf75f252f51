// Benchmark dispatcher: `node dist/bench/run.js NAME [flags]` runs one benchmark from the
// table below under an overall time limit, prints its result with the machine and date as
// one JSON line on stdout (progress goes to stderr) and always runs its clean-up steps.
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { CLUSTER_OPTIONS, runCluster } from './cluster.js';
import { DRAIN_OPTIONS, runDrain } from './drain.js';
import { FILTER_OPTIONS, runFilter } from './filter.js';
import { INTAKE_OPTIONS, runIntake } from './intake.js';
import { usageOf, type OptionSpecs } from './options.js';
import { RELAY_OPTIONS, runRelay } from './relay.js';
import { SCALE_OPTIONS, runScale } from './scale.js';
import { runSoak, SOAK_OPTIONS } from './soak.js';

/** What a benchmark gets from the dispatcher. */
export interface BenchContext {
  /** Arguments after the benchmark's name. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Aborted at the overall time limit or on SIGINT/SIGTERM. */
  signal: AbortSignal;
  /** Registers a clean-up step; steps run last-in first-out when the benchmark ends, however it ends. */
  defer(step: () => unknown): void;
  /** A progress line on stderr. */
  progress(message: string): void;
  /** The error to throw for bad flags or environment: the dispatcher prints it with the usage and exits 2. */
  usageError(message: string): Error;
}

/** A benchmark's result; a non-empty `problems` list (failed messages, lost data…) makes the run exit 1. */
export type Benchmark = (context: BenchContext) => Promise<Record<string, unknown> & { problems?: string[] }>;

/** Each benchmark with its flags and its default overall time limit (BENCH_TIMEOUT_S overrides it). */
const benchmarks: Record<string, { run: Benchmark; about: string; options: OptionSpecs; timeoutS: number }> = {
  intake: { run: runIntake, about: 'accepted msg/s and 250 latency, Sluice vs Postfix (same load, same run)', options: INTAKE_OPTIONS, timeoutS: 600 },
  relay: { run: runRelay, about: 'accept -> smtp-sink, end-to-end msg/s, Sluice vs Postfix (same load, same run)', options: RELAY_OPTIONS, timeoutS: 1200 },
  drain: { run: runDrain, about: 'backlog queued with the next hop down, then drained: msg/s, Sluice vs Postfix', options: DRAIN_OPTIONS, timeoutS: 1800 },
  scale: { run: runScale, about: '1M queued for a dead next hop: accept rate, RSS, disk; first delivery after a restart', options: SCALE_OPTIONS, timeoutS: 1800 },
  filter: { run: runFilter, about: '1M queued, 100 from a rare sender: time of the filtered message list (API and CLI), answers checked', options: FILTER_OPTIONS, timeoutS: 1800 },
  cluster: { run: runCluster, about: '1, 2, 3 nodes on one PostgreSQL schema -> smtp-sink: accepted and end-to-end msg/s, vs Postfix; takeover time after kill -9 of a node', options: CLUSTER_OPTIONS, timeoutS: 1500 },
  soak: { run: runSoak, about: '100 kill -9 cycles under load on one data directory: acknowledged, delivered, lost (must be 0), duplicated (in flight only)', options: SOAK_OPTIONS, timeoutS: 900 },
};

class UsageError extends Error {}

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
/** After the time limit, how long clean-up may take before the process exits anyway. */
const CLEANUP_GRACE_MS = 60_000;

function usage(): string {
  const lines = Object.entries(benchmarks).flatMap(([name, { about, options, timeoutS }]) => [
    `  ${name.padEnd(10)} ${about} (limit ${timeoutS} s)`,
    `  ${''.padEnd(10)} ${usageOf(options)}`,
  ]);
  return ['usage: npm run bench -- NAME [flags]', '', 'benchmarks:', ...lines, '', 'BENCH_TIMEOUT_S overrides the limit of a whole run; see bench/README.md.'].join('\n');
}

function machine(): Record<string, unknown> {
  return {
    nproc: nproc(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    node: process.version,
  };
}

/** The commit measured, and whether src/ differs from it (then the figures belong to no commit). */
function revision(): Record<string, unknown> {
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', cwd: new URL('../../', import.meta.url) }).trim();
  try {
    return { commit: git('rev-parse', '--short', 'HEAD'), srcDirty: git('status', '--porcelain', '--', 'src') !== '' };
  } catch {
    return { commit: 'unknown' };
  }
}

function nproc(): number {
  try {
    return Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    return availableParallelism();
  }
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const benchmark = name === undefined ? undefined : benchmarks[name];
  if (!benchmark) {
    if (name !== undefined && name !== '--help' && name !== '-h') console.error(`unknown benchmark: ${name}\n`);
    console.error(usage());
    return EXIT_USAGE;
  }
  const timeoutS = Number(process.env.BENCH_TIMEOUT_S ?? benchmark.timeoutS);
  if (!(timeoutS > 0)) {
    console.error(`BENCH_TIMEOUT_S must be a positive number of seconds, got "${process.env.BENCH_TIMEOUT_S}"\n\n${usage()}`);
    return EXIT_USAGE;
  }
  const controller = new AbortController();
  const abort = (why: string) => {
    if (controller.signal.aborted) return;
    console.error(`bench: ${why}; stopping`);
    controller.abort(new Error(why));
    setTimeout(() => process.exit(EXIT_FAILED), CLEANUP_GRACE_MS).unref();
  };
  const limit = setTimeout(() => abort(`overall time limit of ${timeoutS} s reached`), timeoutS * 1000);
  process.once('SIGINT', () => abort('SIGINT'));
  process.once('SIGTERM', () => abort('SIGTERM'));

  const cleanup: (() => unknown)[] = [];
  const startedAt = new Date();
  const loadAtStart = loadavg()[0]!;
  try {
    const result = await benchmark.run({
      args,
      env: process.env,
      signal: controller.signal,
      defer: (step) => cleanup.push(step),
      progress: (message) => console.error(`bench ${name} ${new Date().toISOString().slice(11, 19)}: ${message}`),
      usageError: (message) => new UsageError(message),
    });
    // the load average says whether something else ran meanwhile (this machine is shared)
    const loadAverage = { atStart: loadAtStart, atEnd: loadavg()[0] };
    console.log(JSON.stringify({ benchmark: name, date: startedAt.toISOString(), revision: revision(), machine: { ...machine(), loadAverage }, ...result }));
    for (const problem of result.problems ?? []) console.error(`bench ${name}: PROBLEM: ${problem}`);
    return result.problems?.length ? EXIT_FAILED : 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`bench ${name}: ${error.message}\n\n${usage()}`);
      return EXIT_USAGE;
    }
    console.error(`bench ${name} failed: ${(error as Error).stack ?? String(error)}`);
    return EXIT_FAILED;
  } finally {
    clearTimeout(limit);
    await runCleanup(cleanup.reverse());
  }
}

async function runCleanup(steps: (() => unknown)[]): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      console.error(`bench: clean-up step failed: ${(error as Error).message}`);
    }
  }
}

process.exitCode = await main(process.argv.slice(2));
// Sockets or timers a failed benchmark left behind must not keep the process alive.
setTimeout(() => process.exit(), 1000).unref();
