// The `soak` benchmark (issue 12): one Sluice on one data directory (SQLite) relaying to a sink in
// this process that records every delivered message by its Message-ID, a few senders sending unique
// messages the whole time (each remembers which ones got their 250), and N cycles of: a random
// interval under load, `kill -9`, the same Sluice started again on the same data directory, wait
// until it listens. Then the load stops, Sluice drains and is stopped. Every message that got a 250
// must have been delivered (lost: 0); a message delivered twice must have been in flight at a kill
// (its two copies came from different processes); one delivered without a 250 had its 250 cut off.
import { cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';
import { SmtpClient } from '../test/support/smtp-client.js';
import { mulberry32 } from '../test/support/chaos-hop.js';
import { benchDirectory } from './measure.js';
import { deliveryTimeoutOption, integer, readOptions, text } from './options.js';
import { filesystemType, listenInProcessSink } from './peers.js';
import type { BenchContext } from './run.js';
import { countStoredMessages, exitProblems, listQueues, managementRequest, startSluice, type SluiceLog, type SluiceProcess, type SluiceSetup } from './sluice.js';
import { bodyOf, ENVELOPE_FROM, ENVELOPE_TO } from './smtp-load.js';
import { every, pollUntil, round2, secondsSince } from './support.js';

export const SOAK_OPTIONS = {
  cycles: integer('SOAK_CYCLES', 100),
  senders: integer('SOAK_SENDERS', 4),
  /** Each cycle's time under load before the kill: uniform between a tenth of this and this. */
  'seconds-per-cycle': integer('SOAK_SECONDS_PER_CYCLE', 2),
  /** The cycling ends after this long even if not all cycles ran (then a `problems` entry). */
  seconds: integer('SOAK_SECONDS', 600),
  size: integer('SOAK_SIZE', 1024),
  seed: text('SOAK_SEED'),
  ...deliveryTimeoutOption,
};

const EHLO_NAME = 'soak.sender.test';
/** A sender waits this long before it tries to connect again (Sluice is down or starting). */
const RECONNECT_MS = 50;
/** After a kill, the dead process's last bytes are read by the sink before the next process starts. */
const SETTLE_AFTER_KILL_MS = 100;
const PROGRESS_EVERY_MS = 10_000;
const EXAMPLES = 5;

/** What the senders know: every message they tried, and what became of it. */
interface Ledger {
  /** Transactions begun (an id each). */
  sent: number;
  acknowledged: Set<string>;
  /** Refused with a reply other than 250 (id → reply). */
  refused: Map<string, string>;
  /** No final reply: the connection broke (the kill) somewhere in the transaction. */
  unanswered: Set<string>;
  /** Distinct reasons connections broke or could not be opened, with counts. */
  connectionErrors: Map<string, number>;
}

/** One delivered copy: which Sluice process (0 = the first) delivered it, and when it arrived. */
interface Copy {
  process: number;
  at: number;
}

interface SinkRecord {
  port: number;
  /** Copies by message id. */
  copies: Map<string, Copy[]>;
  /** Deliveries whose bytes were not the message sent (after Sluice's own header lines). */
  altered: string[];
  /** Deliveries with no Message-ID of ours. */
  foreign: number;
  stop(): Promise<void>;
}

interface Cycle {
  killedAt: number;
  acknowledgedAtKill: number;
  /** Seconds from the kill's spawn of the next process until it logged `sluice started`. */
  readySeconds: number;
}

export async function runSoak(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, SOAK_OPTIONS);
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  if (values.seed !== undefined && !/^\d+$/.test(values.seed)) throw context.usageError(`--seed (SOAK_SEED) must be a non-negative integer, got "${values.seed}"`);
  const random = mulberry32(seed);
  const cycleMs = values['seconds-per-cycle'] * 1000;
  context.progress(`cycles=${values.cycles} senders=${values.senders} seconds-per-cycle=${values['seconds-per-cycle']} (kill after ${cycleMs / 10}-${cycleMs} ms) size=${values.size} seed=${seed}, at most ${values.seconds} s of cycling`);

  const { workDir, dataDir } = await benchDirectory(context, 'soak');
  // which process is delivering: bumped right before each start, read by the sink at each message
  let generation = 0;
  const sink = await startRecordingSink(context, () => generation, values.size);
  const setup: SluiceSetup = { workDir, dataDir, nextHopPort: sink.port };
  const started = performance.now();
  let sluice = await startSluice(context, setup);
  const logs: SluiceLog[] = [sluice.log];
  context.progress(`sluice on 127.0.0.1:${sluice.port} (data in ${dataDir}), relaying to the recording sink on 127.0.0.1:${sink.port}`);

  const ledger: Ledger = { sent: 0, acknowledged: new Set(), refused: new Map(), unanswered: new Set(), connectionErrors: new Map() };
  const target = { port: sluice.port as number | undefined, stopping: false };
  const body = bodyOf(values.size);
  context.defer(() => SmtpClient.closeAll());
  const senders = Array.from({ length: values.senders }, (_, index) => runSender(index, target, ledger, body));
  const stopReporting = every(PROGRESS_EVERY_MS, () =>
    context.progress(`cycle ${cycles.length}/${values.cycles}: sent ${ledger.sent}, acknowledged ${ledger.acknowledged.size}, delivered ${sink.copies.size}`),
  );

  const cycles: Cycle[] = [];
  const cyclingDeadline = started + values.seconds * 1000;
  try {
    while (cycles.length < values.cycles && performance.now() < cyclingDeadline) {
      await sleep(cycleMs / 10 + random() * (cycleMs * 0.9), undefined, { signal: context.signal });
      target.port = undefined;
      const killedAt = performance.now();
      const acknowledgedAtKill = ledger.acknowledged.size;
      const cycle = cycles.length + 1;
      try {
        process.kill(sluice.pid, 'SIGKILL');
      } catch (error) {
        throw await failed(context, dataDir, `cycle ${cycle}: Sluice was gone before its kill (${(error as Error).message}); ${ledger.acknowledged.size} acknowledged so far`);
      }
      await sluice.stop(); // waits for the exit (the SIGKILL already ended it)
      await sleep(SETTLE_AFTER_KILL_MS, undefined, { signal: context.signal });
      generation++;
      try {
        sluice = await startSluice(context, setup);
      } catch (error) {
        throw await failed(context, dataDir, `cycle ${cycle}: Sluice did not start again on its data directory after kill -9; ${ledger.acknowledged.size} acknowledged so far: ${(error as Error).message}`);
      }
      logs.push(sluice.log);
      cycles.push({ killedAt, acknowledgedAtKill, readySeconds: sluice.startup.readySeconds });
      target.port = sluice.port;
    }
  } finally {
    target.stopping = true;
    await Promise.all(senders);
    stopReporting();
  }
  const loadSeconds = secondsSince(started);
  context.progress(`${cycles.length} cycles in ${loadSeconds} s; load stopped (acknowledged ${ledger.acknowledged.size}); draining`);

  const drainStarted = performance.now();
  const drained = await drain(context, sluice, sink, ledger, values['delivery-timeout'] * 1000);
  const poisoned = drained.poisoned;
  const drainSeconds = secondsSince(drainStarted);
  const { exit, stopSeconds } = await sluice.stop();
  await sink.stop();
  const stored = countStoredMessages(dataDir);

  const outcome = tally(ledger, sink, cycles);
  const readies = cycles.map((c) => c.readySeconds).sort((a, b) => a - b);
  // messages acknowledged by each process before its kill: every cycle should have been under load
  const perCycle = cycles.map((c, i) => c.acknowledgedAtKill - (i === 0 ? 0 : cycles[i - 1]!.acknowledgedAtKill));
  const logged = sumLogs(logs);
  const result = {
    cycles: cycles.length,
    cyclesRequested: values.cycles,
    senders: values.senders,
    seed,
    bodyBytes: values.size,
    secondsPerCycle: values['seconds-per-cycle'],
    sent: ledger.sent,
    acknowledged: ledger.acknowledged.size,
    refused: ledger.refused.size,
    unanswered: ledger.unanswered.size,
    delivered: sink.copies.size,
    deliveries: outcome.deliveries,
    lost: outcome.lost.length,
    duplicated: outcome.duplicated,
    duplicatedAtOneKillMax: outcome.duplicatedAtOneKillMax,
    firstCopyAfterKillSeconds: outcome.firstCopyAfterKillSeconds,
    unacknowledgedDelivered: outcome.unacknowledgedDelivered,
    // parked in the Poison queue (in hand at poison.crashThreshold kills), resumed at the drain; then delivered
    poisoned: poisoned.length,
    ...(poisoned.length ? { poisonedDetails: { acknowledged: poisoned.filter((p) => p.acknowledged).length, deliveredBeforeResume: poisoned.filter((p) => p.copiesBefore > 0).length, examples: poisoned.slice(0, EXAMPLES) } } : {}),
    stored,
    timeSeconds: { total: secondsSince(started), load: loadSeconds, drain: drainSeconds, stop: stopSeconds },
    acknowledgedPerSecond: loadSeconds > 0 ? Math.round(ledger.acknowledged.size / loadSeconds) : 0,
    acknowledgedPerCycle: perCycle.length ? { min: Math.min(...perCycle), max: Math.max(...perCycle) } : null,
    // a kill with no 250 since the last one: that cycle had no load (a very slow restart or a busy machine)
    cyclesWithoutAcknowledgement: perCycle.filter((n) => n === 0).length,
    restartReadySeconds: readies.length ? { median: readies[Math.floor(readies.length / 2)], max: readies[readies.length - 1] } : null,
    connectionErrors: Object.fromEntries([...ledger.connectionErrors].sort((a, b) => b[1] - a[1]).slice(0, EXAMPLES)),
    ...(ledger.refused.size ? { refusedExamples: [...ledger.refused.values()].slice(0, EXAMPLES) } : {}),
    ...(outcome.lost.length ? { lostExamples: outcome.lost.slice(0, EXAMPLES) } : {}),
    logged,
    exit,
    filesystem: await filesystemType(workDir),
  };
  const problems = [
    ...(cycles.length < values.cycles ? [`only ${cycles.length} of ${values.cycles} cycles within ${values.seconds} s (--seconds)`] : []),
    ...(outcome.lost.length ? [`lost: ${outcome.lost.length} acknowledged messages never delivered, e.g. ${outcome.lost.slice(0, EXAMPLES).join(', ')}`] : []),
    ...outcome.problems,
    ...(drained.complete ? [] : [`drain incomplete after ${drainSeconds} s (--delivery-timeout)`]),
    ...(stored === 0 ? [] : [`the store still holds ${stored} messages after the drain`]),
    ...(sink.altered.length ? [`${sink.altered.length} deliveries differ from the message sent, e.g. ${sink.altered.slice(0, EXAMPLES).join(', ')}`] : []),
    ...(sink.foreign ? [`${sink.foreign} deliveries without a Message-ID of this run`] : []),
    ...(logged.errors > 0 ? [`Sluice logged ${logged.errors} errors, first: ${logged.firstErrors[0] ?? ''}`] : []),
    ...exitProblems('sluice (last process)', exit, { ...sluice.log, errors: 0 }),
  ];
  report(context, result);
  return { ...result, problems };
}

/** A defect that ends the soak: the data directory is kept (copied, the original goes at clean-up) for a look. */
async function failed(context: BenchContext, dataDir: string, why: string): Promise<Error> {
  const kept = join(tmpdir(), `sluice-soak-failed-${Date.now()}`);
  try {
    await cp(dataDir, kept, { recursive: true });
    context.progress(`the data directory is kept in ${kept}`);
  } catch (error) {
    context.progress(`could not keep the data directory: ${(error as Error).message}`);
  }
  return new Error(why);
}

/** One sender: connects (again, whenever Sluice went away), sends unique messages one after the other until told to stop. */
async function runSender(index: number, target: { port: number | undefined; stopping: boolean }, ledger: Ledger, body: Buffer): Promise<void> {
  let client: SmtpClient | undefined;
  let serial = 0;
  const broken = (error: unknown) => {
    const reason = (error as Error).message.replace(/\(buffer: .*\)$/s, '').replace(/127\.0\.0\.1:\d+/, '127.0.0.1:PORT').trim();
    ledger.connectionErrors.set(reason, (ledger.connectionErrors.get(reason) ?? 0) + 1);
    client?.close();
    client = undefined;
  };
  while (!target.stopping) {
    if (target.port === undefined) {
      await sleep(RECONNECT_MS);
      continue;
    }
    if (!client || client.closed) {
      try {
        client = await SmtpClient.open(target.port, EHLO_NAME);
      } catch (error) {
        broken(error);
        await sleep(RECONNECT_MS);
        continue;
      }
    }
    const id = `${RUN_TAG}.${index}.${++serial}@soak.test`;
    ledger.sent++;
    try {
      const reply = await client.send(ENVELOPE_FROM, [ENVELOPE_TO], messageOf(id, body));
      if (reply.code === 250) ledger.acknowledged.add(id);
      else {
        ledger.refused.set(id, reply.text);
        await client.command('RSET');
      }
    } catch (error) {
      ledger.unanswered.add(id);
      broken(error);
    }
  }
  if (client && !client.closed) await client.command('QUIT').catch(() => undefined);
  client?.close();
}

const RUN_TAG = `soak${Date.now().toString(36)}`;
const ID_PATTERN = /^Message-ID: <([^>\r\n]+)>\r$/m;

/** The whole message for an id: a function of the id (and the body), so the sink can check the bytes. */
function messageOf(id: string, body: Buffer): Buffer {
  const header = `From: Soak <${ENVELOPE_FROM}>\r\nTo: <${ENVELOPE_TO}>\r\nSubject: soak ${id}\r\nMessage-ID: <${id}>\r\n\r\n`;
  return Buffer.concat([Buffer.from(header, 'latin1'), body]);
}

/**
 * The next hop: smtp-server in this process on a free port, recording each message's id with the
 * process that delivered it (`generation()` at its arrival), and checking that after Sluice's own
 * header lines the bytes are the message sent. Bodies are not kept.
 */
async function startRecordingSink(context: BenchContext, generation: () => number, bodyBytes: number): Promise<SinkRecord> {
  const body = bodyOf(bodyBytes);
  const copies = new Map<string, Copy[]>();
  const altered: string[] = [];
  let foreign = 0;
  const record = (message: Buffer) => {
    const text = message.toString('latin1');
    const id = ID_PATTERN.exec(text)?.[1];
    if (id === undefined || !id.startsWith(`${RUN_TAG}.`)) return void foreign++;
    const copy = { process: generation(), at: performance.now() };
    const list = copies.get(id);
    if (list) list.push(copy);
    else copies.set(id, [copy]);
    const sent = messageOf(id, body);
    const prefix = message.subarray(0, Math.max(0, message.length - sent.length)).toString('latin1');
    if (!message.subarray(message.length - sent.length).equals(sent) || !/^(Received: [^\r]*\r\n([ \t][^\r]*\r\n)*)+$/.test(prefix)) altered.push(id);
  };
  const server = new SMTPServer({
    secure: false,
    hideSTARTTLS: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      const parts: Buffer[] = [];
      stream.on('data', (part: Buffer) => parts.push(part));
      stream.on('end', () => {
        record(Buffer.concat(parts));
        callback(null, 'Ok: sunk');
      });
    },
  });
  const { port, stop } = await listenInProcessSink(context, server);
  return {
    port,
    copies,
    altered,
    get foreign() {
      return foreign;
    },
    stop,
  };
}

/** A message parked in the Poison queue, as the soak found it before resuming it. */
interface Poisoned {
  id: string;
  acknowledged: boolean;
  /** Copies at the sink before it was resumed. */
  copiesBefore: number;
  lastError: string | null;
}

/**
 * Waits until the sink has every acknowledged message and Sluice's queues are empty (bounded). A
 * message in hand at `poison.crashThreshold` kills is parked, suspended, in the Poison queue (QU-6):
 * it is listed, resumed as an operator would (`POST /api/v1/messages/resume`) and must then be delivered.
 */
async function drain(context: BenchContext, sluice: SluiceProcess, sink: SinkRecord, ledger: Ledger, timeoutMs: number): Promise<{ complete: boolean; poisoned: Poisoned[] }> {
  const missing = () => [...ledger.acknowledged].filter((id) => !sink.copies.has(id)).length;
  const poisoned = new Map<string, Poisoned>();
  let queued = -1;
  const stopReporting = every(PROGRESS_EVERY_MS, () => context.progress(`draining: ${missing()} acknowledged not yet delivered, ${queued} queued in Sluice, ${poisoned.size} resumed from Poison`));
  try {
    const complete = await pollUntil(
      async () => {
        const queues = await listQueues(context, sluice);
        queued = queues.reduce((sum, queue) => sum + queue.MessageCount, 0);
        for (const queue of queues.filter((q) => q.NextHopDomain === 'Poison' && q.MessageCount > 0)) await resumePoison(context, sluice, queue.Identity, sink, ledger, poisoned);
        return queued === 0 && missing() === 0;
      },
      { signal: context.signal, timeoutMs },
    );
    return { complete, poisoned: [...poisoned.values()] };
  } finally {
    stopReporting();
  }
}

async function resumePoison(context: BenchContext, sluice: SluiceProcess, queue: string, sink: SinkRecord, ledger: Ledger, poisoned: Map<string, Poisoned>): Promise<void> {
  const filter = `Queue -eq "${queue}"`;
  const listed = (await managementRequest(context, sluice, 'GET', `/api/v1/messages?filter=${encodeURIComponent(filter)}`)) as { messages: { InternetMessageId: string | null; LastError: string | null }[] };
  for (const message of listed.messages) {
    const id = /^<(.*)>$/.exec(message.InternetMessageId ?? '')?.[1] ?? String(message.InternetMessageId);
    if (!poisoned.has(id)) poisoned.set(id, { id, acknowledged: ledger.acknowledged.has(id), copiesBefore: sink.copies.get(id)?.length ?? 0, lastError: message.LastError });
  }
  const resumed = (await managementRequest(context, sluice, 'POST', '/api/v1/messages/resume', { filter })) as { Resumed?: number };
  context.progress(`resumed ${resumed.Resumed ?? 0} messages from ${queue} (in hand at too many kills), e.g. ${listed.messages[0]?.LastError ?? ''}`);
}

/** Lost, duplicated (and whether each duplicate spans a kill), delivered without a 250. */
function tally(ledger: Ledger, sink: SinkRecord, cycles: Cycle[]) {
  const problems: string[] = [];
  const lost = [...ledger.acknowledged].filter((id) => !sink.copies.has(id));
  let deliveries = 0;
  let duplicated = 0;
  let unacknowledgedDelivered = 0;
  const sameProcess: string[] = [];
  const refusedDelivered: string[] = [];
  const neverSent: string[] = [];
  const duplicatesByKill = new Map<number, number>();
  // when the first copy of a duplicate reached the sink, relative to its process's kill (negative: before it)
  let firstCopyAfterKill = { min: Infinity, max: -Infinity };
  for (const [id, copies] of sink.copies) {
    deliveries += copies.length;
    if (copies.length > 1) {
      duplicated++;
      const processes = copies.map((c) => c.process);
      // legitimate only when each copy came from another process: the earlier ones were in flight at their kill
      if (new Set(processes).size < processes.length) sameProcess.push(id);
      else {
        const first = copies[0]!;
        duplicatesByKill.set(first.process, (duplicatesByKill.get(first.process) ?? 0) + 1);
        const kill = cycles[first.process];
        if (kill) firstCopyAfterKill = { min: Math.min(firstCopyAfterKill.min, first.at - kill.killedAt), max: Math.max(firstCopyAfterKill.max, first.at - kill.killedAt) };
      }
    }
    if (ledger.acknowledged.has(id)) continue;
    if (ledger.unanswered.has(id)) unacknowledgedDelivered++;
    else if (ledger.refused.has(id)) refusedDelivered.push(`${id} (${ledger.refused.get(id)})`);
    else neverSent.push(id);
  }
  if (sameProcess.length) problems.push(`${sameProcess.length} messages delivered twice by the same process (not in flight at a kill), e.g. ${sameProcess.slice(0, EXAMPLES).join(', ')}`);
  if (refusedDelivered.length) problems.push(`${refusedDelivered.length} refused messages were delivered, e.g. ${refusedDelivered.slice(0, EXAMPLES).join(', ')}`);
  if (neverSent.length) problems.push(`${neverSent.length} delivered ids were never sent, e.g. ${neverSent.slice(0, EXAMPLES).join(', ')}`);
  return {
    lost,
    deliveries,
    duplicated,
    duplicatedAtOneKillMax: Math.max(0, ...duplicatesByKill.values()),
    firstCopyAfterKillSeconds: firstCopyAfterKill.min <= firstCopyAfterKill.max ? { min: round2(firstCopyAfterKill.min / 1000), max: round2(firstCopyAfterKill.max / 1000) } : null,
    unacknowledgedDelivered,
    problems,
  };
}

function sumLogs(logs: SluiceLog[]) {
  const sum = { processes: logs.length, warnings: 0, errors: 0, firstErrors: [] as string[], firstWarnings: [] as string[] };
  for (const log of logs) {
    sum.warnings += log.warnings;
    sum.errors += log.errors;
    for (const line of log.firstProblems) {
      const list = /"level":[5-9]\d/.test(line) ? sum.firstErrors : sum.firstWarnings;
      if (list.length < EXAMPLES) list.push(line);
    }
  }
  return sum;
}

function report(context: BenchContext, result: Record<string, unknown> & { timeSeconds: { total: number }; stored: unknown }): void {
  const r = result as Record<string, number | unknown>;
  context.progress(`${r.cycles} kill -9 cycles with ${r.senders} senders in ${result.timeSeconds.total} s`);
  context.progress(`sent ${r.sent}, acknowledged ${r.acknowledged}, refused ${r.refused}, no final reply ${r.unanswered}`);
  context.progress(`delivered ${r.delivered} distinct (${r.deliveries} deliveries): lost ${r.lost}, duplicated ${r.duplicated} (in flight at a kill; at most ${r.duplicatedAtOneKillMax} at one kill), delivered without a 250 ${r.unacknowledgedDelivered}; resumed from Poison ${r.poisoned}; left in the store ${String(result.stored)}`);
  context.progress(`time: ${JSON.stringify(result.timeSeconds)} s; restart until ready: ${JSON.stringify(r.restartReadySeconds)} s`);
}
