// The `cluster` benchmark (issue 13): 1, 2 and 3 Sluice nodes on this machine on one PostgreSQL
// schema (a fresh one per node count, dropped after), the load spread over their listeners, all
// delivering to one smtp-sink: accepted and end-to-end msg/s per node count. Then the takeover: three
// nodes with a short leaseTimeout relay to a slow recording sink, one is killed with SIGKILL under
// load, and the time from the kill until every message it had acknowledged (its 250s, by Message-ID)
// has reached the sink through the others. Postfix gets the same load as the throughput phases.
import { SMTPServer } from 'smtp-server';
import { benchDirectory, endToEndProblems, loadProblems, lossProblems, measurePostfix, summary, waitForSink, type RunSettings } from './measure.js';
import { deliveryTimeoutOption, describeLoad, integer, loadOptions, loadSettings, readOptions, toggle, type LoadSettings } from './options.js';
import { listenInProcessSink, startSmtpSink } from './peers.js';
import { benchPgUrl, countStoredMessagesPg, createBenchSchema, postgresSettings, shownUrl, type BenchSchema } from './postgres.js';
import type { BenchContext } from './run.js';
import { exitProblems, loggedSummary, startSluice, type SluiceProcess } from './sluice.js';
import { runLoad, type LoadResult } from './smtp-load.js';
import { every, perSecond, ratioOf, round2, secondsSince, waitUntil } from './support.js';

export const CLUSTER_OPTIONS = {
  ...loadOptions({ n: 10_000, sessions: 30, size: 5120 }, 'CLUSTER_'),
  /** Throughput is measured with 1, 2, … up to this many nodes. */
  nodes: integer('CLUSTER_NODES', 3),
  /** storage.leaseTimeout of every node in the takeover phase, seconds (short, so the takeover is quick); the throughput phases keep Sluice's default (30 s). */
  'lease-timeout': integer('CLUSTER_LEASE_TIMEOUT_S', 5),
  /** Messages of the takeover phase (three nodes, or --nodes if fewer but at least 2). */
  'takeover-n': integer('CLUSTER_TAKEOVER_N', 3000),
  /** The takeover sink answers each DATA this late, so the killed node has deliveries in flight. */
  'sink-delay-ms': integer('CLUSTER_SINK_DELAY_MS', 20),
  'no-takeover': toggle('CLUSTER_TAKEOVER', '0'),
  'sluice-only': toggle('SLUICE_ONLY', '1'),
  ...deliveryTimeoutOption,
};

/** Issue 13: the cluster delivers more than one node (end-to-end msg/s of the most nodes ÷ of one). */
const CLUSTER_TARGET = 1;
/** A route's maxConnections holds for the whole cluster: 20, as in `relay` (and Postfix's limit). */
const MAX_CONNECTIONS = 20;
const PROGRESS_EVERY_MS = 10_000;

interface NodeSet {
  schema: BenchSchema;
  nodes: SluiceProcess[];
  /** Stops every node still running (SIGTERM), then drops the schema; idempotent. */
  stop(): Promise<{ exits: (number | string)[]; stopSeconds: number[]; stored: number | string }>;
}

export async function runCluster(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, CLUSTER_OPTIONS);
  const load = loadSettings(values);
  const maxNodes = values.nodes;
  const leaseTimeoutS = values['lease-timeout'];
  const timeoutMs = values['delivery-timeout'] * 1000;
  const url = benchPgUrl(context.env);
  context.progress(`N=${load.messages} SESSIONS=${load.sessions} SIZE=${load.bodyBytes} nodes=1..${maxNodes} takeover leaseTimeout=${leaseTimeoutS}s database ${shownUrl(url)}`);

  const problems: string[] = [];
  const byNodes: Record<string, unknown>[] = [];
  const e2eByNodes: number[] = [];
  for (let count = 1; count <= maxNodes; count++) {
    const phase = await measureThroughput(context, count, load, timeoutMs);
    byNodes.push(phase.result);
    e2eByNodes.push(phase.endToEndPerSecond);
    problems.push(...phase.problems);
  }

  const postfixSettings: RunSettings = { load, sink: true, endToEndTimeoutMs: timeoutMs };
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await measurePostfix(context, postfixSettings);
  if ('load' in postfix) {
    context.progress(`postfix: ${summary(postfix.load)}; end to end ${postfix.endToEnd?.perSecond} msg/s`);
    problems.push(...postfix.problems);
  } else context.progress(`postfix skipped: ${postfix.skipped}`);
  const postfixE2e = 'load' in postfix ? postfix.endToEnd?.perSecond : undefined;

  let takeover: Record<string, unknown> | { skipped: string };
  if (values['no-takeover']) takeover = { skipped: 'disabled (--no-takeover)' };
  else {
    const measured = await measureTakeover(context, Math.max(2, maxNodes), { ...load, messages: values['takeover-n'] }, leaseTimeoutS, values['sink-delay-ms'], timeoutMs);
    takeover = measured.result;
    problems.push(...measured.problems);
  }

  const scaling = ratioOf(e2eByNodes[e2eByNodes.length - 1], e2eByNodes[0]);
  const bestScaling = ratioOf(Math.max(...e2eByNodes.slice(1)), e2eByNodes[0]);
  if (scaling !== null) context.progress(`end to end, ${maxNodes} nodes ÷ 1 node: ${scaling} (target > ${CLUSTER_TARGET})`);
  return {
    load: describeLoad(load),
    database: { url: shownUrl(url), settings: await postgresSettings(url) },
    leaseTimeoutSeconds: { throughput: 30, takeover: leaseTimeoutS },
    routeMaxConnections: MAX_CONNECTIONS,
    nodes: byNodes,
    postfix: 'load' in postfix ? { acceptedPerSecond: postfix.load.acceptedPerSecond, endToEndPerSecond: postfixE2e ?? null, accept: postfix.load, endToEnd: postfix.endToEnd ?? null, ...postfix.details } : postfix,
    // each node count's end-to-end msg/s ÷ Postfix's, in order 1, 2, 3
    ratios: e2eByNodes.map((e2e) => ratioOf(e2e, postfixE2e)),
    scaling,
    bestScaling,
    target: `end-to-end msg/s of ${maxNodes} nodes > ${CLUSTER_TARGET} × one node's`,
    meetsTarget: scaling === null ? null : scaling > CLUSTER_TARGET,
    takeover,
    problems,
  };
}

/** Starts `count` nodes (n1…) on a fresh schema, one after another, each with its own data directory. */
async function startNodes(context: BenchContext, tag: string, count: number, nextHopPort: number, leaseTimeoutS?: number): Promise<NodeSet> {
  const schema = await createBenchSchema(context, tag);
  const nodes: SluiceProcess[] = [];
  let stopped: ReturnType<NodeSet['stop']> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      const results = await Promise.all(nodes.map((node) => node.stop()));
      const stored = await countStoredMessagesPg(schema);
      await schema.drop();
      return { exits: results.map((r) => r.exit), stopSeconds: results.map((r) => r.stopSeconds), stored };
    })());
  // registered after the schema's drop, so at clean-up the nodes stop first
  context.defer(stop);
  for (let i = 1; i <= count; i++) {
    const { workDir, dataDir } = await benchDirectory(context, `${tag}-n${i}`);
    nodes.push(await startSluice(context, { workDir, dataDir, nextHopPort, store: schema, node: `n${i}`, ...(leaseTimeoutS ? { leaseTimeout: `${leaseTimeoutS}s` } : {}), maxConnections: MAX_CONNECTIONS }));
  }
  context.progress(`${tag}: ${count} node(s) on schema ${schema.schema}, listening on ${nodes.map((n) => n.port).join(', ')}, relaying to 127.0.0.1:${nextHopPort}`);
  return { schema, nodes, stop };
}

/** The load split over the nodes' listeners: node i gets every count-th session and its share of N. */
function splitLoad(load: LoadSettings, count: number): LoadSettings[] {
  return Array.from({ length: count }, (_, i) => {
    const sessions = Math.floor(load.sessions / count) + (i < load.sessions % count ? 1 : 0);
    const messages = Math.floor(load.messages / count) + (i < load.messages % count ? 1 : 0);
    return { ...load, sessions: Math.max(1, sessions), messages };
  });
}

/** The loads of all nodes together: accepted msg/s over the wall time until the last session ended. */
function combine(results: LoadResult[], wallSeconds: number) {
  const accepted = results.reduce((sum, r) => sum + r.accepted, 0);
  const failures = results.reduce((sum, r) => sum + r.failures, 0);
  return { accepted, failures, wallSeconds, acceptedPerSecond: perSecond(accepted, wallSeconds) };
}

async function measureThroughput(context: BenchContext, count: number, load: LoadSettings, timeoutMs: number) {
  context.signal.throwIfAborted();
  const tag = `cluster${count}`;
  const sink = await startSmtpSink(context);
  const set = await startNodes(context, tag, count, sink.port);
  const shares = splitLoad(load, count);
  const started = performance.now();
  const results = await Promise.all(set.nodes.map((node, i) => runLoad({ ...shares[i]!, host: '127.0.0.1', port: node.port, signal: context.signal })));
  const total = combine(results, secondsSince(started));
  const deliveredDuringLoad = sink.received();
  context.progress(`${tag}: ${total.accepted} accepted in ${total.wallSeconds} s (${total.acceptedPerSecond} msg/s); waiting until the sink has them all (${deliveredDuringLoad} so far)`);
  const endToEnd = await waitForSink(context, tag, sink, total.accepted, started, timeoutMs);
  const { exits, stopSeconds, stored } = await set.stop();
  await sink.stop();
  const delivered = sink.received();
  context.progress(`${tag}: ${count} node(s): accepted ${total.acceptedPerSecond} msg/s, end to end ${endToEnd.perSecond} msg/s (${endToEnd.delivered} in ${endToEnd.seconds} s)`);
  const problems = [
    ...results.flatMap((r, i) => loadProblems(`${tag} n${i + 1}`, r)),
    ...lossProblems(total.accepted, stored, delivered),
    ...(delivered > total.accepted ? [`${tag}: the sink got ${delivered} messages for ${total.accepted} accepted (duplicates without any kill)`] : []),
    ...set.nodes.flatMap((node, i) => exitProblems(`${tag} n${i + 1}`, exits[i]!, node.log)),
    ...endToEndProblems(tag, endToEnd),
  ];
  const result = {
    nodes: count,
    acceptedPerSecond: total.acceptedPerSecond,
    endToEndPerSecond: endToEnd.perSecond,
    accept: total,
    endToEnd,
    deliveredDuringLoad,
    delivered,
    stored,
    perNode: set.nodes.map((node, i) => ({
      node: `n${i + 1}`,
      sessions: shares[i]!.sessions,
      accepted: results[i]!.accepted,
      acceptedPerSecond: results[i]!.acceptedPerSecond,
      latencyMs: results[i]!.latencyMs,
      startup: node.startup,
      exit: exits[i],
      stopSeconds: stopSeconds[i],
      logged: loggedSummary(node.log),
    })),
  };
  return { result, endToEndPerSecond: endToEnd.perSecond, problems };
}

/** A sink in this process that answers each DATA `delayMs` late and records each Message-ID's copies. */
interface RecordingSink {
  port: number;
  /** First arrival (performance.now()) and number of copies, by Message-ID (without <>). */
  copies: Map<string, { firstAt: number; count: number }>;
  stop(): Promise<void>;
}

const MESSAGE_ID = /^Message-ID: <([^>\r\n]+)>/im;

async function startRecordingSink(context: BenchContext, delayMs: number): Promise<RecordingSink> {
  const copies = new Map<string, { firstAt: number; count: number }>();
  const server = new SMTPServer({
    secure: false,
    hideSTARTTLS: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    size: 0,
    onData(stream, _session, callback) {
      let head = '';
      stream.on('data', (part: Buffer) => {
        if (head.length < 4096) head += part.toString('latin1');
      });
      stream.on('end', () => {
        setTimeout(() => {
          const id = MESSAGE_ID.exec(head)?.[1];
          if (id !== undefined) {
            const copy = copies.get(id);
            if (copy) copy.count++;
            else copies.set(id, { firstAt: performance.now(), count: 1 });
          }
          callback(null, 'Ok: sunk');
        }, delayMs);
      });
    },
  });
  const { port, stop } = await listenInProcessSink(context, server);
  return { port, copies, stop };
}

async function measureTakeover(context: BenchContext, count: number, load: LoadSettings, leaseTimeoutS: number, sinkDelayMs: number, timeoutMs: number) {
  context.signal.throwIfAborted();
  const tag = 'takeover';
  const sink = await startRecordingSink(context, sinkDelayMs);
  const set = await startNodes(context, tag, count, sink.port, leaseTimeoutS);
  const victimIndex = count - 1;
  const victim = set.nodes[victimIndex]!;
  const acknowledged = set.nodes.map(() => new Set<string>());
  const shares = splitLoad(load, count);
  const started = performance.now();
  const loading = Promise.all(
    set.nodes.map((node, i) => runLoad({ ...shares[i]!, host: '127.0.0.1', port: node.port, signal: context.signal, onAccepted: (id) => acknowledged[i]!.add(id) })),
  );
  let loadDone = false;
  void loading.then(
    () => (loadDone = true),
    () => (loadDone = true),
  );
  // under load: once a third of the load has been acknowledged (the slow sink holds transactions open meanwhile)
  const killThreshold = Math.floor(load.messages / 3);
  const acknowledgedSoFar = () => acknowledged.reduce((sum, ids) => sum + ids.size, 0);
  await waitUntil(() => loadDone || acknowledgedSoFar() >= killThreshold, { signal: context.signal, timeoutMs });
  const killedUnderLoad = !loadDone;
  const acknowledgedByVictimAtKill = acknowledged[victimIndex]!.size;
  const atSinkAtKill = sink.copies.size;
  const killedAt = performance.now();
  process.kill(victim.pid, 'SIGKILL');
  await victim.stop(); // only waits for the exit
  context.progress(`${tag}: n${count} killed with SIGKILL ${secondsSince(started, killedAt)} s into the load (${acknowledgedByVictimAtKill} acknowledged by it, ${acknowledgedSoFar()} by all, ${atSinkAtKill} at the sink)${killedUnderLoad ? '' : ' AFTER the load had ended'}`);
  const results = await loading;
  const total = combine(results, secondsSince(started));
  // every 250 the dead node sent (its last ones may have reached the client just after the kill)
  const owedByVictim = [...acknowledged[victimIndex]!];
  const owedByAll = acknowledged.flatMap((set) => [...set]);
  const missing = (ids: string[]) => ids.filter((id) => !sink.copies.has(id)).length;
  const stopReporting = every(PROGRESS_EVERY_MS, () =>
    context.progress(`${tag}: ${missing(owedByVictim)} of the dead node's ${owedByVictim.length} not yet delivered; ${missing(owedByAll)} of all ${owedByAll.length}`),
  );
  let victimComplete: boolean;
  let allComplete: boolean;
  try {
    victimComplete = await waitUntil(() => missing(owedByVictim) === 0, { signal: context.signal, timeoutMs: leaseTimeoutS * 1500 + timeoutMs, everyMs: 50 });
    allComplete = await waitUntil(() => missing(owedByAll) === 0, { signal: context.signal, timeoutMs, everyMs: 50 });
  } finally {
    stopReporting();
  }
  const lastArrival = (ids: string[]) => ids.reduce((latest, id) => Math.max(latest, sink.copies.get(id)?.firstAt ?? -Infinity), killedAt);
  const takeoverSeconds = victimComplete ? secondsSince(killedAt, lastArrival(owedByVictim)) : null;
  const allDeliveredSeconds = allComplete ? secondsSince(killedAt, lastArrival(owedByAll)) : null;
  // a little longer: late duplicates of what was in flight
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const { exits, stored } = await set.stop();
  await sink.stop();
  const copies = [...sink.copies.values()];
  const duplicates = copies.reduce((sum, c) => sum + c.count - 1, 0);
  const acknowledgedIds = new Set(owedByAll);
  const unacknowledgedDelivered = [...sink.copies.keys()].filter((id) => !acknowledgedIds.has(id)).length;
  const lostVictim = missing(owedByVictim);
  const lostAll = missing(owedByAll);
  const survivors = set.nodes.filter((_, i) => i !== victimIndex);
  context.progress(
    `${tag}: every message the dead node acknowledged (${owedByVictim.length}) delivered ${takeoverSeconds ?? 'NOT'} s after the kill (leaseTimeout ${leaseTimeoutS} s); all ${owedByAll.length} after ${allDeliveredSeconds ?? 'NOT'} s; ${duplicates} duplicates`,
  );
  const result = {
    nodes: count,
    killed: `n${count}`,
    leaseTimeoutSeconds: leaseTimeoutS,
    sinkDelayMs,
    messages: load.messages,
    killedUnderLoad,
    killedAfterSeconds: secondsSince(started, killedAt),
    killAtAcknowledged: killThreshold,
    atSinkAtKill,
    accept: total,
    acknowledgedByKilled: owedByVictim.length,
    acknowledgedByKilledAtKill: acknowledgedByVictimAtKill,
    acknowledged: owedByAll.length,
    takeoverSeconds,
    takeoverInLeaseTimeouts: takeoverSeconds === null ? null : round2(takeoverSeconds / leaseTimeoutS),
    allDeliveredSeconds,
    delivered: sink.copies.size,
    duplicates,
    unacknowledgedDelivered,
    lost: lostAll,
    stored,
    takenBackLogLines: survivors.map((n) => n.log.takenBack),
    perNode: set.nodes.map((node, i) => ({ node: `n${i + 1}`, accepted: results[i]!.accepted, failures: results[i]!.failures, exit: exits[i], logged: loggedSummary(node.log) })),
  };
  const problems = [
    ...(lostVictim || lostAll ? [`${tag}: LOST: ${lostAll} acknowledged messages never reached the sink (${lostVictim} of them acknowledged by the killed node)`] : []),
    ...results.flatMap((r, i) => (i === victimIndex ? [] : loadProblems(`${tag} n${i + 1}`, r))),
    ...set.nodes.flatMap((node, i) => (i === victimIndex ? [] : exitProblems(`${tag} n${i + 1}`, exits[i]!, node.log))),
    ...(killedUnderLoad ? [] : [`${tag}: the load ended before ${killThreshold} messages were acknowledged: the kill was not under load`]),
  ];
  return { result, problems };
}
