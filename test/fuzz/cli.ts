// The long fuzz run: `npm run fuzz -- --sessions 100000 --seed N` (after a build).
// Bounded by session count and time; prints the seed, sessions run, acknowledged,
// delivered, and each failing check with the seed and session to replay.
// `--session K` (repeatable) replays sessions with a transcript of every byte.
import { parseArgs } from 'node:util';
import { formatResult, runFuzz } from './run.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    minutes: { type: 'string', default: '30' },
    'rss-mb': { type: 'string', default: '300' },
    session: { type: 'string', multiple: true },
    quiet: { type: 'boolean', default: false },
  },
});

const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const only = values.session?.map(Number);
const cleanups: Array<() => unknown> = [];
const ctx = { after: (fn: () => unknown) => void cleanups.push(fn) };

console.log(`sluice fuzz: seed ${seed}${only ? `, sessions ${only.join(', ')}` : `, ${values.sessions} sessions`}, ${only ? 1 : values.concurrency} at a time, at most ${values.minutes} min`);
let code = 1;
try {
  const result = await runFuzz(ctx, {
    seed,
    sessions: Number(values.sessions),
    concurrency: only ? 1 : Number(values.concurrency),
    maxMs: Number(values.minutes) * 60_000,
    rssLimitMb: Number(values['rss-mb']),
    ...(only ? { only, transcript: (line: string) => console.log(line) } : {}),
    ...(values.quiet ? {} : { progress: (line: string) => console.log(line) }),
  });
  console.log(formatResult(result));
  code = result.failures.length === 0 ? 0 : 1;
} catch (error) {
  console.error(error);
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
process.exit(code);
