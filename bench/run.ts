// Benchmark dispatcher: `node dist/bench/run.js NAME [flags]` runs one benchmark from the
// table below under an overall time limit, prints its result with the machine and date as
// one JSON line on stdout (progress goes to stderr) and always runs its clean-up steps.
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { INTAKE_FLAGS, runIntake } from './intake.js';

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

const benchmarks: Record<string, { run: Benchmark; about: string; flags: string }> = {
  intake: { run: runIntake, about: 'accepted msg/s and 250 latency, Sluice vs Postfix (same load, same run)', flags: INTAKE_FLAGS },
};

class UsageError extends Error {}

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const DEFAULT_TIMEOUT_S = 600;
/** After the time limit, how long clean-up may take before the process exits anyway. */
const CLEANUP_GRACE_MS = 60_000;

function usage(): string {
  const lines = Object.entries(benchmarks).flatMap(([name, { about, flags }]) => [`  ${name.padEnd(10)} ${about}`, `  ${''.padEnd(10)} ${flags}`]);
  return ['usage: npm run bench -- NAME [flags]', '', 'benchmarks:', ...lines, '', 'BENCH_TIMEOUT_S (600) bounds a whole run; see bench/README.md.'].join('\n');
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
  const timeoutS = Number(process.env.BENCH_TIMEOUT_S ?? DEFAULT_TIMEOUT_S);
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
  try {
    const result = await benchmark.run({
      args,
      env: process.env,
      signal: controller.signal,
      defer: (step) => cleanup.push(step),
      progress: (message) => console.error(`bench ${name}: ${message}`),
      usageError: (message) => new UsageError(message),
    });
    console.log(JSON.stringify({ benchmark: name, date: startedAt.toISOString(), revision: revision(), machine: machine(), ...result }));
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
