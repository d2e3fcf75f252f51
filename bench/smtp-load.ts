// SMTP load generator for the benchmarks, on plain node:net sockets: S concurrent
// sessions, each connecting once (EHLO once) and sending its share of N messages,
// and for every message the latency from writing the final ".\r\n" to its 250.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LoadOptions {
  host: string;
  port: number;
  /** Messages in all (N). */
  messages: number;
  /** Concurrent sessions (S); each sends N/S messages over one connection. */
  sessions: number;
  /** Bytes of body after the headers (SIZE), CRLF lines of at most 78 characters. */
  bodyBytes: number;
  /** Longest wait for any one reply (or for the connection) before the session is given up. */
  replyTimeoutMs: number;
  /** Send MAIL, RCPT and DATA in one write when the server offers PIPELINING (RFC 2920). */
  pipelining: boolean;
  /** The sender, in MAIL FROM and the From: header; ENVELOPE_FROM unless given. */
  envelopeFrom?: string;
  /** Aborting closes every connection; runLoad then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called with each message's Message-ID (without <>) when its 250 arrives (the cluster benchmark's ledger). */
  onAccepted?: (messageId: string) => void;
}

export interface LoadResult {
  messages: number;
  accepted: number;
  /** Messages not accepted: refused by the server, or never sent because their session failed. */
  failures: number;
  wallSeconds: number;
  /** Accepted messages per second of wall time (first connect to last session done). */
  acceptedPerSecond: number;
  /** From writing ".\r\n" to reading the 250, over accepted messages. */
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** True when every session pipelined MAIL/RCPT/DATA; false when any ran lock-step. */
  pipelined: boolean;
  /** Distinct failure reasons with how many messages each cost. */
  errors: { reason: string; messages: number }[];
}

export const ENVELOPE_FROM = 'bench@sender.test';
export const ENVELOPE_TO = 'rcpt@example.com';
const EHLO_NAME = 'load.sender.test';
const LINE_TEXT = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.';

interface SmtpReply {
  code: number;
  lines: string[];
}

/** A refusal or an unexpected reply: the message fails, the session goes on. */
class UnexpectedReply extends Error {}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  options.signal?.throwIfAborted();
  const tally = new Tally(options.messages);
  const body = bodyOf(options.bodyBytes);
  const clients = new Set<SmtpClient>();
  const closeAll = () => clients.forEach((client) => client.destroy(new Error('aborted')));
  options.signal?.addEventListener('abort', closeAll, { once: true });
  const started = performance.now();
  try {
    const shares = sharesOf(options.messages, options.sessions);
    const pipelinedBySession = await Promise.all(
      shares.map((count, index) => runSession({ options, index, count, body, tally, clients })),
    );
    options.signal?.throwIfAborted();
    return tally.result((performance.now() - started) / 1000, pipelinedBySession.every(Boolean));
  } finally {
    options.signal?.removeEventListener('abort', closeAll);
  }
}

/** N messages over S sessions: the first N mod S sessions send one more; sessions with none are left out. */
function sharesOf(messages: number, sessions: number): number[] {
  const base = Math.floor(messages / sessions);
  const extra = messages % sessions;
  return Array.from({ length: sessions }, (_, i) => base + (i < extra ? 1 : 0)).filter((count) => count > 0);
}

interface SessionPlan {
  options: LoadOptions;
  index: number;
  count: number;
  body: Buffer;
  tally: Tally;
  clients: Set<SmtpClient>;
}

/** One session: connect, EHLO, `count` transactions, QUIT. Returns whether it pipelined. */
async function runSession(plan: SessionPlan): Promise<boolean> {
  const { options, tally } = plan;
  const sender = options.envelopeFrom ?? ENVELOPE_FROM;
  let sent = 0;
  let pipelined = false;
  let client: SmtpClient | undefined;
  try {
    client = await SmtpClient.open(options.host, options.port, options.replyTimeoutMs);
    plan.clients.add(client);
    options.signal?.throwIfAborted();
    expect(await client.reply(), 220, 'greeting');
    client.send(`EHLO ${EHLO_NAME}\r\n`);
    const ehlo = expect(await client.reply(), 250, 'EHLO');
    pipelined = options.pipelining && ehlo.lines.some((line) => /^250[ -]PIPELINING\b/i.test(line));
    while (sent < plan.count) {
      const { header, id } = messageHeader(sender, plan.index, sent);
      const refused = await sendMessage(client, pipelined, sender, header, plan.body, tally);
      if (!refused) options.onAccepted?.(id);
      sent++;
      if (refused) await reset(client);
    }
    client.send('QUIT\r\n');
    await client.reply().catch(() => undefined);
  } catch (error) {
    tally.fail(reasonOf(error), plan.count - sent);
  } finally {
    client?.destroy();
    if (client) plan.clients.delete(client);
  }
  return pipelined;
}

/** One transaction, counted as accepted or refused (then it returns true); a broken connection throws, uncounted. */
async function sendMessage(client: SmtpClient, pipelined: boolean, sender: string, header: string, body: Buffer, tally: Tally): Promise<boolean> {
  try {
    await sendEnvelope(client, pipelined, sender);
    client.send(header);
    client.send(body);
    const sentAt = performance.now();
    client.send('.\r\n');
    expect(await client.reply(), 250, 'end of data');
    tally.accept(performance.now() - sentAt);
    return false;
  } catch (error) {
    if (!(error instanceof UnexpectedReply)) throw error;
    tally.fail(error.message, 1);
    return true;
  }
}

/** After a refused transaction: RSET, so the next MAIL is not a nested one. */
async function reset(client: SmtpClient): Promise<void> {
  client.send('RSET\r\n');
  await client.reply();
}

async function sendEnvelope(client: SmtpClient, pipelined: boolean, sender: string): Promise<void> {
  const commands = [`MAIL FROM:<${sender}>\r\n`, `RCPT TO:<${ENVELOPE_TO}>\r\n`, 'DATA\r\n'];
  const expected: [number, string][] = [
    [250, 'MAIL'],
    [250, 'RCPT'],
    [354, 'DATA'],
  ];
  if (pipelined) client.send(commands.join(''));
  const replies: SmtpReply[] = [];
  for (const [i, command] of commands.entries()) {
    if (!pipelined) client.send(command);
    replies.push(await client.reply());
    // lock-step: stop at the first refusal; pipelined: all three replies must be read first
    if (!pipelined) expect(replies[i]!, ...expected[i]!);
  }
  // A 354 after a refused MAIL/RCPT leaves the server waiting for a body: end it with "." first.
  if (replies[2]?.code === 354 && replies.some((r, i) => r.code !== expected[i]![0])) {
    client.send('.\r\n');
    await client.reply();
  }
  replies.forEach((reply, i) => expect(reply, ...expected[i]!));
}

function expect(reply: SmtpReply, code: number, step: string): SmtpReply {
  if (reply.code !== code) throw new UnexpectedReply(`${step}: ${reply.lines.join(' | ')}`);
  return reply;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let messageSerial = 0;
const runTag = Date.now().toString(36);

function messageHeader(sender: string, session: number, message: number): { header: string; id: string } {
  const id = `${runTag}.${session}.${message}.${++messageSerial}@sender.test`;
  const header =
    `From: Bench <${sender}>\r\n` +
    `To: <${ENVELOPE_TO}>\r\n` +
    `Subject: bench message ${session}/${message}\r\n` +
    `Date: ${new Date().toUTCString()}\r\n` +
    `Message-ID: <${id}>\r\n` +
    '\r\n';
  return { header, id };
}

/** Exactly `bytes` of body (for bytes >= 2) as CRLF-ended lines, none starting with "." (no dot-stuffing). */
export function bodyOf(bytes: number): Buffer {
  const lines: string[] = [];
  let left = bytes;
  while (left >= 2) {
    let textLength = Math.min(LINE_TEXT.length, left - 2);
    if (left - textLength - 2 === 1) textLength -= 1; // never leave a single byte for the last line
    lines.push(LINE_TEXT.slice(0, textLength) + '\r\n');
    left -= textLength + 2;
  }
  return Buffer.from(lines.join(''), 'latin1');
}

/** Counts of accepted and failed messages and the latency of each accepted one. */
class Tally {
  private readonly latencies: Float64Array;
  private accepted = 0;
  private failed = 0;
  private readonly reasons = new Map<string, number>();

  constructor(private readonly messages: number) {
    this.latencies = new Float64Array(messages);
  }

  accept(latencyMs: number): void {
    this.latencies[this.accepted++] = latencyMs;
  }

  fail(reason: string, messages: number): void {
    if (messages <= 0) return;
    this.failed += messages;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + messages);
  }

  result(wallSeconds: number, pipelined: boolean): LoadResult {
    const sorted = this.latencies.slice(0, this.accepted).sort();
    return {
      messages: this.messages,
      accepted: this.accepted,
      failures: this.failed,
      wallSeconds: round(wallSeconds, 2),
      acceptedPerSecond: Math.round(this.accepted / wallSeconds),
      latencyMs: { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99), max: percentile(sorted, 1) },
      pipelined,
      errors: [...this.reasons].map(([reason, messages]) => ({ reason, messages })).sort((a, b) => b.messages - a.messages),
    };
  }
}

/** Nearest-rank percentile of ascending values, in ms with 2 decimals; 0 when there are none. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return round(sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!, 2);
}

function round(value: number, decimals: number): number {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

/** One SMTP client connection: writes commands and reads replies (multi-line aware), one at a time. */
class SmtpClient {
  private unparsed = '';
  private replyLines: string[] = [];
  private readonly ready: SmtpReply[] = [];
  private waiter: { resolve: (reply: SmtpReply) => void; reject: (error: Error) => void; timer: NodeJS.Timeout } | undefined;
  private closedBy: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly replyTimeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.setNoDelay(true);
    socket.on('data', (text: string) => this.parse(text));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy(new Error('connection closed by the server')));
  }

  static open(host: string, port: number, timeoutMs: number): Promise<SmtpClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpClient(socket, timeoutMs));
      });
    });
  }

  send(data: string | Buffer): void {
    if (!this.closedBy) this.socket.write(data);
  }

  /** The next reply, in order; rejects on timeout or once the connection is gone. */
  reply(): Promise<SmtpReply> {
    const next = this.ready.shift();
    if (next) return Promise.resolve(next);
    if (this.closedBy) return Promise.reject(this.closedBy);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.destroy(new Error(`no reply within ${this.replyTimeoutMs} ms`)), this.replyTimeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  destroy(reason = new Error('connection closed by the client')): void {
    this.closedBy ??= reason;
    this.socket.destroy();
    const waiter = this.takeWaiter();
    waiter?.reject(this.closedBy);
  }

  private parse(text: string): void {
    this.unparsed += text;
    for (let end = this.unparsed.indexOf('\r\n'); end >= 0; end = this.unparsed.indexOf('\r\n')) {
      const line = this.unparsed.slice(0, end);
      this.unparsed = this.unparsed.slice(end + 2);
      this.replyLines.push(line);
      if (line.charAt(3) !== '-') this.complete({ code: Number(line.slice(0, 3)), lines: this.replyLines });
    }
  }

  private complete(reply: SmtpReply): void {
    this.replyLines = [];
    const waiter = this.takeWaiter();
    if (waiter) waiter.resolve(reply);
    else this.ready.push(reply);
  }

  private takeWaiter() {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) clearTimeout(waiter.timer);
    return waiter;
  }
}
