// The `filter` benchmark: listing a large queue with a selective filter. Sluice's next hop is dead,
// so everything it accepts stays queued: FILTER_N messages (1,000,000 by default), of which
// FILTER_RARE (100) come from a sender no other message has. Once the categorizer has routed them
// all, the management API's message list (`GET /api/v1/messages?filter=…`) is timed for filters
// that select only those, each FILTER_REPEAT times, and every answer is checked for the right
// count; then one unselective list and one `sluice message list` through the CLI, for information.
// With chromium present (or --browser), the web viewer's Messages page too, timed in the browser
// (browser.ts): the sender's filter FILTER_REPEAT times, the unfiltered first page once.
import { spawn } from 'node:child_process';
import { chromiumPresent, CHROMIUM, timeWebViewer, UI_PAGE } from './browser.js';
import { benchDirectory, loadProblems, lossProblems, reportIntake, summary } from './measure.js';
import { deliveryTimeoutOption, describeLoad, integer, loadOptions, loadSettings, readOptions, text, toggle, type LoadSettings } from './options.js';
import { freePort } from './peers.js';
import type { BenchContext } from './run.js';
import { NEXT_HOP_ROUTE, SLUICE_CLI, countStoredMessages, exitProblems, loggedSummary, startSluice, type SluiceProcess } from './sluice.js';
import { runLoad, type LoadResult } from './smtp-load.js';
import { diskUsage, perSecond, pollUntil, round2, secondsSince } from './support.js';

/** Target at this stage: a selective filter over the whole queue answers in under a second (median of the repeats). */
const TARGET_MS = 1000;
/** The sender only the rare messages have. */
export const RARE_SENDER = 'rare@example.net';
/** The API's default page, used for every list here; the rare messages must fit in it. */
const LIST_LIMIT = 1000;
/** At most this many sessions send the rare messages. */
const RARE_SESSIONS = 10;
/** Longest wait for one answer of the API, and for the CLI run. */
const QUERY_TIMEOUT_MS = 120_000;

export const FILTER_OPTIONS = {
  ...loadOptions({ n: 1_000_000, sessions: 100, size: 1024 }, 'FILTER_'),
  ...deliveryTimeoutOption,
  rare: integer('FILTER_RARE', 100),
  repeat: integer('FILTER_REPEAT', 5),
  'cpu-prof': text('SLUICE_CPU_PROF'),
  browser: toggle('FILTER_BROWSER', '1'),
  'no-browser': toggle('FILTER_BROWSER', '0'),
};

interface FilterSettings {
  /** The whole load: `messages` is N, the rare ones included. */
  load: LoadSettings;
  rare: number;
  repeat: number;
  /** Longest wait for routing the backlog. */
  timeoutMs: number;
  cpuProfileDir: string | undefined;
  /** Time the web viewer's Messages page in chromium too. */
  browser: boolean;
}

/** One filter as it is timed: what it should return (null: not checked), and whether it counts for the target. */
interface QuerySpec {
  name: string;
  filter: string | undefined;
  expected: { count: number; truncated: boolean } | null;
  /** True: the sender's filters; every answer must be the rare messages. */
  rareOnly: boolean;
  target: boolean;
}

interface MessageList {
  messages: Array<{ Identity: string; Queue: string; FromAddress: string; InternetMessageId: string | null }>;
  truncated: boolean;
}

export async function runFilter(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, FILTER_OPTIONS);
  const settings: FilterSettings = {
    load: loadSettings(values),
    rare: values.rare,
    repeat: values.repeat,
    timeoutMs: values['delivery-timeout'] * 1000,
    cpuProfileDir: values['cpu-prof'],
    // on by default when chromium is there; --browser insists on it, --no-browser leaves it out
    browser: values['no-browser'] ? false : values.browser || chromiumPresent(),
  };
  if (values.browser && values['no-browser']) throw context.usageError('--browser and --no-browser (FILTER_BROWSER) together');
  if (settings.browser && !chromiumPresent()) throw context.usageError(`--browser (FILTER_BROWSER=1): ${CHROMIUM} is missing (apt-get install chromium)`);
  if (settings.browser && settings.rare > UI_PAGE) throw context.usageError(`--browser: --rare (FILTER_RARE) must be at most ${UI_PAGE} (one page of the web viewer), got ${settings.rare}`);
  if (settings.rare >= settings.load.messages) throw context.usageError(`--rare (FILTER_RARE) must be less than --n (FILTER_N), got ${settings.rare} of ${settings.load.messages}`);
  if (settings.rare > LIST_LIMIT) throw context.usageError(`--rare (FILTER_RARE) must be at most ${LIST_LIMIT} (one page of the list), got ${settings.rare}`);
  context.progress(`N=${settings.load.messages} (${settings.rare} from ${RARE_SENDER}) SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes}`);

  const { workDir, dataDir } = await benchDirectory(context, 'filter');
  const sluice = await startSluice(context, { workDir, dataDir, nextHopPort: await freePort(), cpuProfileDir: settings.cpuProfileDir });
  context.progress(`sluice on 127.0.0.1:${sluice.port}, management API on ${sluice.management.url} (pid ${sluice.pid}); its next hop is dead`);
  const problems: string[] = [];

  const fill = await fillQueue(context, sluice, settings);
  problems.push(...fill.problems);
  const memory = sluice.memory();
  const queue = await queueListed(context, sluice);
  context.progress(`queue ${queue.identity ?? NEXT_HOP_ROUTE}: ${queue.messageCount ?? 'not listed'} messages; timing the lists`);
  if (queue.messageCount !== fill.accepted) problems.push(`queue list: ${NEXT_HOP_ROUTE} has ${queue.messageCount ?? 'no entry'} messages, ${fill.accepted} were accepted and routed`);

  const selective: Awaited<ReturnType<typeof timeQuery>>[] = [];
  let messageId: string | null | undefined;
  const checked = (count: number): QuerySpec['expected'] => ({ count, truncated: false });
  for (const spec of [
    { name: 'FromAddress -eq', filter: `FromAddress -eq "${RARE_SENDER}"`, expected: checked(fill.rareAccepted), rareOnly: true, target: true },
    { name: 'FromAddress -like', filter: `FromAddress -like "${RARE_SENDER.slice(0, 4)}*"`, expected: checked(fill.rareAccepted), rareOnly: true, target: true },
    { name: 'Queue -eq -and FromAddress -like', filter: `{Queue -eq "${NEXT_HOP_ROUTE}" -and FromAddress -like "${RARE_SENDER.slice(0, 4)}*"}`, expected: checked(fill.rareAccepted), rareOnly: true, target: true },
  ]) {
    const timed = await timeQuery(context, sluice, spec, settings.repeat);
    messageId ??= timed.sample?.InternetMessageId;
    selective.push(timed);
  }
  if (messageId) {
    // one of the rare messages by its Message-ID (each message has its own)
    selective.push(await timeQuery(context, sluice, { name: 'InternetMessageId -eq', filter: `InternetMessageId -eq "${messageId}"`, expected: checked(1), rareOnly: true, target: true }, settings.repeat));
  } else {
    problems.push('no Message-ID to look up: the sender filter returned no message with an InternetMessageId');
  }
  const total = fill.accepted;
  const informational = [
    await timeQuery(context, sluice, { name: 'Status -eq Retry', filter: 'Status -eq "Retry"', expected: null, rareOnly: false, target: false }, settings.repeat),
    await timeQuery(context, sluice, { name: 'no filter', filter: undefined, expected: { count: Math.min(total, LIST_LIMIT), truncated: total > LIST_LIMIT }, rareOnly: false, target: false }, settings.repeat),
  ];
  const cli = await timeCli(context, sluice, `FromAddress -eq "${RARE_SENDER}"`, fill.rareAccepted);
  const browser = settings.browser ? await timeBrowser(context, sluice, fill.rareAccepted, Math.min(total, UI_PAGE), settings.repeat) : null;
  if (browser) problems.push(...browser.problems);

  for (const query of [...selective, ...informational]) problems.push(...query.problems);
  problems.push(...cli.problems);
  const slow = selective.filter((q) => q.ms.median >= TARGET_MS);
  for (const query of slow) problems.push(`"${query.filter}": median ${query.ms.median} ms over ${query.ms.runs.length} runs (target < ${TARGET_MS} ms)`);

  const stopped = await sluice.stop();
  const queued = countStoredMessages(dataDir);
  const disk = await diskUsage(dataDir);
  problems.push(...exitProblems('sluice', stopped.exit, sluice.log), ...lossProblems(fill.accepted, queued, 0));
  return {
    load: describeLoad(settings.load),
    rare: { sender: RARE_SENDER, messages: settings.rare },
    sluice: { startup: sluice.startup, fill: fill.result, memory, queue, exit: stopped.exit, stopSeconds: stopped.stopSeconds, logged: loggedSummary(sluice.log), queued, disk },
    queries: { limit: LIST_LIMIT, repeat: settings.repeat, selective: selective.map((q) => q.result), informational: informational.map((q) => q.result), cli: cli.result },
    browser: browser?.result ?? { skipped: `${chromiumPresent() ? '--no-browser' : `${CHROMIUM} is missing`}` },
    target: { selectiveMedianMs: TARGET_MS, browserMedianMs: TARGET_MS },
    meetsTarget: slow.length === 0 && selective.every((q) => q.problems.length === 0),
    ...(browser ? { meetsBrowserTarget: browser.meetsTarget } : {}),
    problems,
  };
}

/**
 * Fills the queue: half the common messages, then the rare ones, then the other half (so the rare
 * ones sit in the middle of the queue, neither first nor last), and waits until all are routed.
 */
async function fillQueue(context: BenchContext, sluice: SluiceProcess, settings: FilterSettings) {
  const common = settings.load.messages - settings.rare;
  const firstHalf = Math.floor(common / 2);
  const parts: { name: string; messages: number; sessions: number; envelopeFrom?: string }[] = [
    { name: 'common (first half)', messages: firstHalf, sessions: settings.load.sessions },
    { name: `rare (${RARE_SENDER})`, messages: settings.rare, sessions: Math.min(RARE_SESSIONS, settings.rare), envelopeFrom: RARE_SENDER },
    { name: 'common (second half)', messages: common - firstHalf, sessions: settings.load.sessions },
  ];
  const stopReporting = reportIntake(context, sluice);
  const started = performance.now();
  const loads: (LoadResult & { part: string })[] = [];
  try {
    for (const part of parts.filter((p) => p.messages > 0)) {
      const { name, ...load } = part;
      const result = await runLoad({ ...settings.load, ...load, host: '127.0.0.1', port: sluice.port, signal: context.signal });
      context.progress(`${name}: ${summary(result)}`);
      loads.push({ part: name, ...result });
    }
    const loadSeconds = secondsSince(started);
    const accepted = loads.reduce((sum, load) => sum + load.accepted, 0);
    const rareAccepted = loads.find((load) => load.part === parts[1]!.name)?.accepted ?? 0;
    const settleStarted = performance.now();
    // routed = Submission empty and the route's queue holding every accepted message, as
    // `GET /api/v1/queues` lists them (at log level info Sluice no longer logs a line per routed message)
    let listed = { submission: null as number | null, queued: null as number | null };
    const routed = await pollUntil(
      async () => {
        const queues = (await apiGet(context, sluice, '/api/v1/queues', {})) as Array<{ Identity: string; NextHopDomain?: string; MessageCount: number }>;
        listed = {
          submission: queues.find((q) => q.NextHopDomain === 'Submission' || q.Identity.endsWith('/Submission'))?.MessageCount ?? 0,
          queued: queues.find((q) => q.Identity.endsWith(`/${NEXT_HOP_ROUTE}`))?.MessageCount ?? null,
        };
        return listed.submission === 0 && (listed.queued ?? 0) >= accepted;
      },
      { signal: context.signal, timeoutMs: settings.timeoutMs, everyMs: 1000 },
    );
    const settle = { complete: routed, seconds: secondsSince(settleStarted), submission: listed.submission, queued: listed.queued };
    context.progress(`${accepted} accepted in ${loadSeconds} s (${rareAccepted} rare); ${listed.queued} in ${NEXT_HOP_ROUTE}, Submission ${listed.submission}, after ${settle.seconds} s more`);
    const problems = [
      ...loads.flatMap((load) => loadProblems(`sluice (${load.part})`, load)),
      ...(routed ? [] : [`sluice: only ${listed.queued} of ${accepted} routed (Submission ${listed.submission}) within ${settings.timeoutMs / 1000} s`]),
    ];
    const result = { accepted, rareAccepted, seconds: loadSeconds, acceptedPerSecond: perSecond(accepted, loadSeconds), settle, parts: loads };
    return { result, accepted, rareAccepted, problems };
  } finally {
    stopReporting();
  }
}

/** The bench queue as `GET /api/v1/queues` lists it. */
async function queueListed(context: BenchContext, sluice: SluiceProcess): Promise<{ identity: string | null; messageCount: number | null; status: unknown }> {
  const queues = (await apiGet(context, sluice, '/api/v1/queues', {})) as Array<{ Identity: string; MessageCount: number; Status: unknown }>;
  const entry = queues.find((q) => q.Identity.endsWith(`/${NEXT_HOP_ROUTE}`));
  return { identity: entry?.Identity ?? null, messageCount: entry?.MessageCount ?? null, status: entry?.Status ?? null };
}

async function apiGet(context: BenchContext, sluice: SluiceProcess, path: string, query: Record<string, string>): Promise<unknown> {
  const url = new URL(path, sluice.management.url);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  const response = await fetch(url, {
    headers: { authorization: `Bearer ${sluice.management.token}` },
    signal: AbortSignal.any([context.signal, AbortSignal.timeout(QUERY_TIMEOUT_MS)]),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`GET ${url.pathname}${url.search}: ${response.status} ${body.slice(0, 500)}`);
  return JSON.parse(body);
}

/** Min, median and max of the repeats, in ms; `runs` in the order they ran (the first one may find colder caches). */
function spread(runs: number[]): { min: number; median: number; max: number; runs: number[] } {
  const sorted = [...runs].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  const median = sorted.length % 2 === 1 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { min: round2(sorted[0]!), median: round2(median), max: round2(sorted.at(-1)!), runs: runs.map(round2) };
}

/** Runs one list `repeat` times, one after the other: the time of each, from the request to the parsed JSON, and its checks. */
async function timeQuery(context: BenchContext, sluice: SluiceProcess, spec: QuerySpec, repeat: number) {
  const runs: number[] = [];
  const problems: string[] = [];
  let last: MessageList | undefined;
  const query: Record<string, string> = { limit: String(LIST_LIMIT), ...(spec.filter !== undefined ? { filter: spec.filter } : {}) };
  for (let i = 0; i < repeat; i++) {
    const started = performance.now();
    const list = (await apiGet(context, sluice, '/api/v1/messages', query)) as MessageList;
    runs.push(performance.now() - started);
    last = list;
    // every answer is checked, not only the last: a benchmark whose result is wrong proves nothing
    const wrong = wrongAnswer(spec, list);
    if (wrong && problems.length === 0) problems.push(`"${spec.filter ?? '(no filter)'}" (run ${i + 1}): ${wrong}`);
  }
  const ms = spread(runs);
  context.progress(`${spec.name}: ${last?.messages.length ?? 0} messages${last?.truncated ? ' (truncated)' : ''}, min ${ms.min} / median ${ms.median} / max ${ms.max} ms`);
  const result = {
    name: spec.name,
    filter: spec.filter ?? null,
    ms,
    returned: last?.messages.length ?? 0,
    truncated: last?.truncated ?? null,
    expected: spec.expected,
    correct: spec.expected === null ? null : problems.length === 0,
    ...(spec.target ? { meetsTarget: ms.median < TARGET_MS } : {}),
  };
  return { filter: spec.filter ?? '(no filter)', ms, result, problems, sample: last?.messages[0] };
}

function wrongAnswer(spec: QuerySpec, list: MessageList): string | undefined {
  if (spec.expected === null) return undefined;
  const { count, truncated } = spec.expected;
  if (list.messages.length !== count || list.truncated !== truncated) {
    return `expected ${count} messages (truncated ${truncated}), got ${list.messages.length} (truncated ${list.truncated})`;
  }
  if (spec.rareOnly) {
    const other = list.messages.find((m) => m.FromAddress.toLowerCase() !== RARE_SENDER);
    if (other) return `${other.Identity} is from ${other.FromAddress}, not ${RARE_SENDER}`;
    const ids = new Set(list.messages.map((m) => m.Identity));
    if (ids.size !== list.messages.length) return `${list.messages.length - ids.size} messages listed twice`;
  }
  return undefined;
}

/** `sluice message list --filter … --json` once, with the server's address and token in its environment: wall time including Node's start. */
async function timeCli(context: BenchContext, sluice: SluiceProcess, filter: string, expected: number) {
  const args = [SLUICE_CLI, 'message', 'list', '--filter', filter, '--json', '--limit', String(LIST_LIMIT)];
  const env = { ...process.env, SLUICE_MANAGEMENT_URL: sluice.management.url, SLUICE_TOKEN: sluice.management.token };
  const started = performance.now();
  const run = await new Promise<{ exit: number | string; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], signal: context.signal, timeout: QUERY_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) => (stderr += `${error.message}\n`));
    child.on('close', (code, signal) => resolve({ exit: code ?? signal ?? 'unknown', stdout, stderr }));
  });
  const ms = round2(performance.now() - started);
  const command = `sluice message list --filter '${filter}' --json`;
  let returned: number | null = null;
  let problem: string | undefined;
  if (run.exit !== 0) {
    problem = `${command}: exited with ${run.exit}: ${run.stderr.trim().slice(0, 300)}`;
  } else {
    try {
      const list = JSON.parse(run.stdout) as MessageList;
      returned = list.messages.length;
      if (returned !== expected || list.truncated) problem = `${command}: expected ${expected} messages, got ${returned} (truncated ${list.truncated})`;
    } catch (error) {
      problem = `${command}: output is not JSON (${(error as Error).message})`;
    }
  }
  context.progress(`cli: ${returned ?? 'no'} messages in ${ms} ms (Node's start included)`);
  return { result: { command, ms, exit: run.exit, returned, expected }, problems: problem ? [problem] : [] };
}

/**
 * The web viewer in chromium: the Messages page with the sender's filter `repeat` times (must show
 * exactly the rare messages; the target: median under TARGET_MS from the navigation's start to the
 * rendered table), and the unfiltered first page once (information).
 */
async function timeBrowser(context: BenchContext, sluice: SluiceProcess, rare: number, firstPage: number, repeat: number) {
  const filter = `FromAddress -eq "${RARE_SENDER}"`;
  const timed = await timeWebViewer(context, sluice.management.url, sluice.management.token, [
    { name: 'Messages, FromAddress -eq', url: `/ui/messages?filter=${encodeURIComponent(filter)}`, expectedRows: rare, repeat },
    { name: 'Messages, no filter', url: '/ui/messages', expectedRows: firstPage, repeat: 1 },
  ]);
  const problems = [...timed.problems];
  const [selective, unfiltered] = timed.results;
  for (const result of timed.results) {
    const wrong = result.runs.find((run) => run.rows !== result.expectedRows);
    if (wrong) problems.push(`browser, ${result.name}: ${wrong.rows} rows shown, expected ${result.expectedRows}`);
  }
  const median = selective?.renderedMs?.median ?? null;
  const complete = selective !== undefined && selective.runs.length === repeat;
  if (median !== null && median >= TARGET_MS) problems.push(`browser: the Messages page with "${filter}" rendered in median ${median} ms over ${selective!.runs.length} runs (max ${selective!.renderedMs!.max} ms; target < ${TARGET_MS} ms)`);
  const meetsTarget = complete && median !== null && median < TARGET_MS && problems.length === 0;
  return {
    result: { chromium: timed.chromium, filter, pageRows: UI_PAGE, selective: selective ?? null, unfiltered: unfiltered ?? null },
    problems,
    meetsTarget,
  };
}
