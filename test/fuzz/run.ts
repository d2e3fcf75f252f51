// The SMTP fuzzer's driver and checks: a real Sluice child process relaying
// to a real sink, sessions from generator.ts played over real sockets (each
// session from its own loopback address, 127.x.y.z, so a delivered message's
// Received header tells which session sent it), and the checks below on
// every reply, every delivered message, the process and its logs.
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { startSink, type Sink, type SunkMessage } from '../support/sink.js';
import { spawnSluice, type SluiceProcess } from '../support/sluice.js';
import { SmtpClient } from '../support/smtp-client.js';
import { FUZZ_PASSWORD, FUZZ_USER, planSession, type ServerFeatures, type SessionPlan, type Step, type WriteMode } from './generator.js';

export const CHECKS = {
  'process-alive': 'Sluice keeps running',
  'rss-bounded': 'resident memory stays under the limit',
  'reply-syntax': 'every reply line is a 3-digit code (2xx-5xx), then space, hyphen or the end, CRLF-terminated; one code per reply',
  'reply-ascii': 'reply text is printable US-ASCII only (RFC 5321 §4.2)',
  'reply-no-internals': 'no stack traces, file paths, JS error classes, errno codes, "undefined", "[object" in replies',
  'acked-delivered': 'every message acknowledged with 250 after DATA reaches the sink',
  'delivered-identical': 'what reaches the sink is, after our Received header, byte-identical to what was acknowledged',
  'unacked-not-delivered': 'nothing that was not acknowledged reaches the sink',
  'no-duplicates': 'no recipient of a message gets it twice',
  'valid-accepted': 'a valid transaction on a session in a known state is accepted (250/354; 452 4.3.1 allowed)',
  responsive: 'a session in a known state answers within the time limit',
  'slots-not-leaked': 'after the run, as many clients as the listener allows can connect at once, and a message still goes through',
  'starttls-refused': 'STARTTLS without a configured certificate is refused (502/454), never 220',
  'postmaster-accepted': 'RCPT TO:<postmaster> (no domain) is accepted (RFC 5321 §4.5.1)',
  'long-line-500': 'an over-long command line gets 500 and the session goes on (RFC 5321 §4.5.3.1.4)',
  'log-quiet': 'client behaviour writes no error-level log line and no stack trace',
} as const;
export type CheckName = keyof typeof CHECKS;

export interface Failure {
  check: CheckName;
  session?: number;
  step?: number;
  detail: string;
  /** Bytes sent (escaped, shortened). */
  sent?: string;
  /** Reply got (escaped, shortened). */
  got?: string;
}

export interface FuzzOptions {
  seed: number;
  sessions: number;
  concurrency?: number;
  /** Stop starting sessions after this long (the checks after the run still happen). */
  maxMs?: number;
  rssLimitMb?: number;
  /** Only these sessions (replay). */
  only?: number[];
  /** A transcript line for every byte sent and reply got (replay). */
  transcript?: (line: string) => void;
  progress?: (line: string) => void;
}

export interface FuzzResult {
  seed: number;
  sessionsPlanned: number;
  sessionsRun: number;
  acknowledged: number;
  delivered: number;
  /** Delivered though the 250 was never read: the session was cut after a complete body (allowed). */
  deliveredAfterCut: number;
  /** Acknowledged messages whose body the driver did not track (garbage that happened to form a message). */
  acknowledgedUntracked: number;
  refusedAtDataEnd: number;
  deliveryReports: number;
  durationMs: number;
  peakRssMb: number;
  failures: Failure[];
  failureCounts: Partial<Record<CheckName, number>>;
  flavors: Record<string, number>;
}

type Ctx = { after(fn: () => unknown): void };

const EXAMPLES_PER_CHECK = 12;

export function escape(data: Buffer | string, max = 240): string {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const shown = text.length > max ? `${text.slice(0, max)}…(${text.length} bytes)` : text;
  return JSON.stringify(shown).replace(/[\u0080-\u00ff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

/** Session n connects from 127.a.b.c (never 127.0.x.x, which the rest of the run uses). */
export function addressOf(session: number): string {
  return `127.${1 + (session >>> 16)}.${(session >>> 8) & 255}.${session & 255}`;
}

function sessionOf(address: string): number | undefined {
  const m = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (!m || m[1] === '0') return undefined;
  return ((Number(m[1]) - 1) << 16) + (Number(m[2]) << 8) + Number(m[3]);
}

const LEAKS: Array<[RegExp, string]> = [
  [/\b[A-Z][A-Za-z]*Error\b/, 'JS error class'],
  [/undefined/i, '"undefined"'],
  [/\[object /, '"[object"'],
  [/\bat [^ ]+ \(|\bat .*:\d+:\d+/, 'stack frame'],
  [/(^|[\s(])\/(work|home|usr|tmp|opt|var|root|src|dist)\b/, 'file path'],
  [/node_modules|node:internal|\.[cm]?[jt]s:\d+/, 'source location'],
  [/\b(ECONNRESET|EPIPE|ENOSPC|ENOENT|EACCES|EIO|EBADF|EEXIST|ETIMEDOUT|ERR_[A-Z_]+|SQLITE_[A-Z_]+)\b/, 'errno code'],
  [/\bNaN\b|\bnull\b/, 'NaN/null'],
];

interface Reply {
  code: number;
  lines: string[];
}

/** Parsing and checking of what the server sends on one connection. */
class Connection {
  readonly socket: Socket;
  replies: Reply[] = [];
  private partial: Buffer = Buffer.alloc(0);
  private current: string[] = [];
  closed = false;
  /** The server ended the connection (not us). */
  closedByServer = false;
  destroyedByUs = false;
  lastData = Date.now();
  /** Heuristic: after a 354, until a terminator is sent. */
  dataMode = false;
  private dataTail = '';
  private waiters: Array<() => void> = [];

  constructor(
    readonly session: number,
    port: number,
    private readonly fail: (f: Omit<Failure, 'session'>) => void,
    private readonly transcript?: (line: string) => void,
  ) {
    this.socket = connect({ port, host: '127.0.0.1', localAddress: addressOf(session) });
    this.socket.setNoDelay(true);
    this.socket.on('data', (data: Buffer) => this.onData(data));
    this.socket.on('end', () => {
      if (!this.destroyedByUs) this.closedByServer = true;
    });
    this.socket.on('close', () => {
      this.closed = true;
      if (this.closedByServer && this.partial.length > 0) {
        this.fail({ check: 'reply-syntax', detail: 'the server closed the connection after a reply line without CRLF', got: escape(this.partial) });
      }
      this.wake();
    });
    this.socket.on('error', () => undefined);
  }

  connected(): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.socket.readyState === 'open') return resolve(true);
      this.socket.once('connect', () => resolve(true));
      this.socket.once('close', () => resolve(false));
    });
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  private onData(data: Buffer): void {
    this.lastData = Date.now();
    let input = this.partial.length ? Buffer.concat([this.partial, data]) : data;
    for (let end = input.indexOf('\r\n'); end !== -1; end = input.indexOf('\r\n')) {
      this.onLine(input.subarray(0, end));
      input = input.subarray(end + 2);
    }
    this.partial = Buffer.from(input);
    if (this.partial.length > 100_000) {
      this.fail({ check: 'reply-syntax', detail: 'over 100,000 octets without CRLF', got: escape(this.partial) });
      this.partial = Buffer.alloc(0);
    }
    this.wake();
  }

  private onLine(raw: Buffer): void {
    const text = raw.toString('latin1');
    this.transcript?.(`S${this.session} < ${escape(text, 400)}`);
    const nonAscii = [...raw].some((o) => (o < 0x20 && o !== 0x09) || o > 0x7e);
    if (nonAscii) this.fail({ check: 'reply-ascii', detail: 'octets outside printable US-ASCII in a reply', got: escape(raw, 300) });
    for (const [pattern, what] of LEAKS) {
      if (pattern.test(text)) this.fail({ check: 'reply-no-internals', detail: what, got: escape(raw, 300) });
    }
    const syntax = /^([2-5]\d\d)([ -]|$)/.exec(text);
    if (!syntax) this.fail({ check: 'reply-syntax', detail: 'not "<3-digit code 2xx-5xx>[ -]text"', got: escape(raw, 300) });
    const code = syntax ? Number(syntax[1]) : NaN;
    if (this.current.length > 0 && this.current[0]!.slice(0, 3) !== text.slice(0, 3)) {
      this.fail({ check: 'reply-syntax', detail: 'lines of one multi-line reply with different codes', got: escape([...this.current, text].join('\r\n'), 300) });
    }
    this.current.push(text);
    if (syntax && syntax[2] === '-') return;
    this.replies.push({ code, lines: this.current });
    this.current = [];
    if (code === 354) {
      this.dataMode = true;
      this.dataTail = '\r\n';
    }
  }

  /** Writes as the step says: at once, in a few random pieces, or one octet at a time. */
  async send(bytes: Buffer, mode: WriteMode, pieces: () => number): Promise<void> {
    if (this.closed || bytes.length === 0) return;
    this.transcript?.(`S${this.session} > ${escape(bytes, 400)}${mode === 'whole' ? '' : ` (${mode})`}`);
    if (this.dataMode) {
      const seen = this.dataTail + bytes.subarray(0, 4096).toString('latin1') + (bytes.length > 4096 ? bytes.subarray(-8).toString('latin1') : '');
      if (seen.includes('\r\n.\r\n') || /\r\n\.\r\n$/.test(this.dataTail + bytes.toString('latin1'))) this.dataMode = false;
      this.dataTail = (this.dataTail + bytes.subarray(-4).toString('latin1')).slice(-4);
    }
    const write = async (part: Buffer) => {
      if (this.closed) return;
      if (!this.socket.write(part)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.socket.off('drain', done);
            this.socket.off('close', done);
            resolve();
          };
          this.socket.once('drain', done);
          this.socket.once('close', done);
        });
      }
    };
    if (mode === 'whole') return write(bytes);
    if (mode === 'bytewise') {
      for (let i = 0; i < bytes.length && !this.closed; i++) {
        await write(bytes.subarray(i, i + 1));
        await new Promise((resolve) => setImmediate(resolve));
      }
      return;
    }
    let at = 0;
    while (at < bytes.length && !this.closed) {
      const next = Math.min(bytes.length, at + Math.max(1, pieces()));
      await write(bytes.subarray(at, next));
      await new Promise((resolve) => setImmediate(resolve));
      at = next;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Until there are `count` replies in all, the connection closes, or time runs out. */
  async waitReplies(count: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count) {
      if (this.closed) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.sleep(left);
    }
    return true;
  }

  /** Until nothing has come for `quietMs` (at most `maxMs`). */
  async waitQuiet(quietMs: number, maxMs: number): Promise<void> {
    const start = Date.now();
    const deadline = start + maxMs;
    let mark = Math.max(this.lastData, start);
    while (!this.closed) {
      const now = Date.now();
      if (now >= deadline) return;
      if (now - mark >= quietMs) return;
      await this.sleep(Math.min(quietMs - (now - mark), deadline - now));
      mark = Math.max(this.lastData, mark);
    }
  }

  async waitClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await this.sleep(deadline - Date.now());
  }

  destroy(): void {
    this.destroyedByUs = true;
    this.socket.destroy();
  }

  end(): void {
    this.destroyedByUs = true;
    this.socket.end();
  }
}

interface Ack {
  session: number;
  tx?: number;
  /** Until its first delivery. */
  body?: Buffer;
  sha: string;
  length: number;
  mutation?: string;
  deliveredTo: Set<string>;
  deliveries: number;
}

interface Delivered {
  id: string;
  session: number | undefined;
  rest: Buffer;
  recipients: string[];
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Our Received header (src/intake/received-header.ts): its address, queue id, and what follows it. */
export function parseRelayed(body: Buffer, hostname: string): { ip: string; id: string; rest: Buffer } | undefined {
  const text = body.toString('latin1');
  if (!text.startsWith('Received: from ')) return undefined;
  const first = text.indexOf('\r\n');
  const ip = /\[([0-9.]+)\]\)$/.exec(text.slice(0, first))?.[1];
  const second = text.indexOf('\r\n', first + 2);
  const by = text.slice(first + 2, second);
  const m = new RegExp(`^\\tby ${hostname.replace(/\./g, '\\.')} \\(Sluice\\) with \\w+ id ([0-9A-Za-z]+)(;?)$`).exec(by);
  if (!ip || !m) return undefined;
  let at = second + 2;
  if (!m[2]) {
    const forEnd = text.indexOf('\r\n', at);
    if (!/^\tfor <.*>;$/.test(text.slice(at, forEnd))) return undefined;
    at = forEnd + 2;
  }
  const dateEnd = text.indexOf('\r\n', at);
  if (text[at] !== '\t' || dateEnd === -1) return undefined;
  return { ip, id: m[1]!, rest: body.subarray(dateEnd + 2) };
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

export async function probeFeatures(port: number): Promise<ServerFeatures> {
  const client = await SmtpClient.open(port);
  try {
    const hello = await client.command('EHLO probe.test');
    return { extensions: hello.lines.slice(1).map((l) => l.split(' ')[0]!.toUpperCase()) };
  } finally {
    client.close();
  }
}

export interface Target {
  sluice: SluiceProcess;
  sink: Sink;
  hostname: string;
  maxConnections: number;
}

export async function startTarget(ctx: Ctx, concurrency: number): Promise<Target> {
  const sink = await startSink(ctx);
  const maxConnections = concurrency + 8;
  const sluice = await spawnSluice(ctx, {
    // AUTH offered in the clear, so that the fuzzer reaches it (PLAIN and LOGIN, one user)
    listeners: [{ name: 'fuzz', listen: '127.0.0.1:0', maxMessageSize: '1MB', maxConnections, maxConnectionsPerIp: maxConnections, idleTimeout: '30s', allowInsecureAuth: true }],
    auth: { users: [{ username: FUZZ_USER, password: FUZZ_PASSWORD }] },
    routes: [{ name: 'sink', match: ['*'], smartHosts: [`127.0.0.1:${sink.port}`], tls: 'none', maxConnections: 4 }],
  });
  return { sluice, sink, hostname: 'sluice.test', maxConnections };
}

/** Runs the sessions against a fresh Sluice and checks everything; the caller's ctx.after cleans up. */
export async function runFuzz(ctx: Ctx, options: FuzzOptions): Promise<FuzzResult> {
  const started = Date.now();
  const concurrency = options.concurrency ?? 16;
  const rssLimitKb = (options.rssLimitMb ?? 300) * 1024;
  const maxMs = options.maxMs ?? 40_000;
  const target = await startTarget(ctx, concurrency);
  const { sluice, sink } = target;
  const features = await probeFeatures(sluice.port);
  const starttlsOffered = features.extensions.includes('STARTTLS');

  const failures: Failure[] = [];
  const failureCounts: Partial<Record<CheckName, number>> = {};
  const fail = (f: Failure) => {
    failureCounts[f.check] = (failureCounts[f.check] ?? 0) + 1;
    if (failures.filter((x) => x.check === f.check).length < EXAMPLES_PER_CHECK) failures.push(f);
  };

  const acks = new Map<string, Ack>();
  const cutAfterBody = new Set<number>();
  const pending: Delivered[] = [];
  const flavors: Record<string, number> = {};
  let acknowledgedUntracked = 0;
  let refusedAtDataEnd = 0;
  let delivered = 0;
  let deliveredAfterCut = 0;
  let deliveryReports = 0;
  let peakKb = 0;
  let sessionsRun = 0;
  let lastLogProblem = '';

  // ---- the process: alive, memory, logs
  const watchProcess = async () => {
    if (sluice.child.exitCode !== null || sluice.child.signalCode !== null) return false;
    try {
      const memory = await sluice.memory();
      peakKb = Math.max(peakKb, memory.peakKb, memory.rssKb);
      if (memory.rssKb > rssLimitKb) fail({ check: 'rss-bounded', detail: `RSS ${(memory.rssKb / 1024).toFixed(0)} MB after ${sessionsRun} sessions` });
    } catch {
      return false;
    }
    for (const lineText of sluice.logLines.splice(0)) {
      let entry: { level?: number; msg?: string; err?: { type?: string; message?: string; stack?: string }; stack?: string };
      try {
        entry = JSON.parse(lineText);
      } catch {
        continue;
      }
      const stack = entry.err?.stack ?? entry.stack;
      if ((entry.level ?? 0) >= 50 || stack) {
        const key = `${entry.level} ${entry.msg} ${entry.err?.type ?? ''} ${entry.err?.message ?? ''}`;
        const detail = `level ${entry.level} "${entry.msg}"${entry.err ? ` err ${entry.err.type}: ${escape(entry.err.message ?? '', 120)}` : ''}${stack ? ` with a stack trace (${escape(stack.split('\n').slice(0, 2).join(' | '), 160)})` : ''}`;
        if (key !== lastLogProblem) fail({ check: 'log-quiet', detail });
        else failureCounts['log-quiet'] = (failureCounts['log-quiet'] ?? 0) + 1;
        lastLogProblem = key;
      }
    }
    return true;
  };
  let processDead = false;
  const watcher = setInterval(() => {
    void watchProcess().then((alive) => {
      if (!alive && !processDead) {
        processDead = true;
        fail({ check: 'process-alive', detail: `Sluice exited (code ${sluice.child.exitCode}, signal ${sluice.child.signalCode}) after about ${sessionsRun} sessions` });
      }
    });
  }, 500);
  ctx.after(() => clearInterval(watcher));

  // ---- the sink: every delivered message, resolved against the acknowledgements
  const resolve = (d: Delivered, final: boolean): boolean => {
    const ack = acks.get(d.id);
    if (!ack) {
      if (!final) return false;
      if (d.session !== undefined && cutAfterBody.has(d.session)) {
        deliveredAfterCut++;
        return true;
      }
      fail({
        check: 'unacked-not-delivered',
        ...(d.session !== undefined ? { session: d.session } : {}),
        detail: `message ${d.id} delivered to ${d.recipients.join(', ')} was never acknowledged`,
        got: escape(d.rest, 200),
      });
      return true;
    }
    ack.deliveries++;
    for (const rcpt of d.recipients) {
      const key = rcpt.toLowerCase();
      if (ack.deliveredTo.has(key)) fail({ check: 'no-duplicates', session: ack.session, detail: `message ${d.id} delivered twice to ${rcpt}` });
      ack.deliveredTo.add(key);
    }
    const same = ack.length === -1 || (d.rest.length === ack.length && sha(d.rest) === ack.sha);
    if (!same) {
      const at = ack.body ? firstDifference(d.rest, ack.body) : -1;
      fail({
        check: 'delivered-identical',
        session: ack.session,
        detail: `message ${d.id}${ack.tx !== undefined ? ` (transaction ${ack.tx}${ack.mutation ? `, body with ${ack.mutation}` : ''})` : ''}: accepted ${ack.length} octets, delivered ${d.rest.length}${at >= 0 ? `, first difference at octet ${at}` : ''}`,
        ...(ack.body ? { sent: escape(ack.body.subarray(Math.max(0, at - 40), at + 40), 200) } : {}),
        got: escape(d.rest.subarray(Math.max(0, at - 40), at + 40), 200),
      });
    }
    ack.body = undefined;
    return true;
  };
  const collect = (final: boolean) => {
    for (const m of sink.messages.splice(0) as SunkMessage[]) {
      const parsed = parseRelayed(m.body, target.hostname);
      if (!parsed) {
        if (m.body.toString('latin1').startsWith(`Received: by ${target.hostname} (Sluice) id `)) {
          deliveryReports++;
          continue;
        }
        fail({ check: 'unacked-not-delivered', detail: `a delivered message without our Received header, to ${m.to.join(', ')}`, got: escape(m.body, 200) });
        continue;
      }
      delivered++;
      const d = { id: parsed.id, session: sessionOf(parsed.ip), rest: parsed.rest, recipients: m.to };
      if (!resolve(d, false)) pending.push(d);
    }
    for (let i = pending.length - 1; i >= 0; i--) if (resolve(pending[i]!, final)) pending.splice(i, 1);
  };
  const collector = setInterval(() => collect(false), 250);
  ctx.after(() => clearInterval(collector));

  // ---- the sessions
  const runSession = async (plan: SessionPlan): Promise<void> => {
    const rng = { n: plan.session * 7919 + 1 };
    const pieces = () => {
      rng.n = (Math.imul(rng.n, 1103515245) + 12345) >>> 0;
      return 1 + (rng.n % 97);
    };
    let stepIndex = -1;
    let stepSent: Buffer = Buffer.alloc(0);
    const sessionFail = (f: Omit<Failure, 'session'>) =>
      fail({ session: plan.session, ...(stepIndex >= 0 ? { step: stepIndex, sent: f.sent ?? escape(stepSent) } : {}), ...f });
    const conn = new Connection(plan.session, sluice.port, sessionFail, options.transcript);
    const sessionDeadline = Date.now() + 60_000;
    try {
      if (!(await conn.connected())) return;
      await conn.waitReplies(1, 10_000);
      const greeting = conn.replies[0];
      if (!greeting) return sessionFail({ check: 'responsive', detail: 'no greeting within 10 s' });
      if (greeting.code !== 220) return sessionFail({ check: 'slots-not-leaked', detail: `greeting refused during the run with ${concurrency} sessions at once`, got: escape(greeting.lines.join('\n')) });
      const aborted = new Set<number>();
      let unsynced = '';
      let inSync = false;
      let longLineFailed = false;
      const okRcpt = new Map<number, number>();
      for (let i = 0; i < plan.steps.length; i++) {
        if (conn.closed || Date.now() > sessionDeadline) break;
        const step: Step = plan.steps[i]!;
        if (step.tx !== undefined && aborted.has(step.tx)) continue;
        stepIndex = i;
        const isCut = plan.cut?.step === i;
        const bytes = isCut ? step.bytes.subarray(0, plan.cut!.offset) : step.bytes;
        stepSent = bytes;
        const before = conn.replies.length;
        const tracked = step.tx !== undefined;
        const known = step.expect !== undefined && (!conn.dataMode || step.role === 'body');
        if (!tracked && step.role !== 'quit' && step.role !== 'sync' && !step.check) inSync = false;
        await conn.send(bytes, step.write, pieces);
        unsynced = (unsynced + bytes.toString('latin1')).slice(-70_000);
        if (isCut) break;
        if (!known) {
          // the server may be in the middle of a message: a transaction cannot go on from an unknown state
          if (tracked) aborted.add(step.tx!);
          if (tracked || step.role === 'sync') inSync = false;
          await conn.waitQuiet(30, 400);
          continue;
        }
        const limit = step.role === 'body' ? 30_000 : tracked || step.check ? 15_000 : 1500;
        const complete = await conn.waitReplies(before + step.expect!, limit);
        if ((tracked || step.role === 'sync') && complete) await conn.waitQuiet(step.role === 'sync' ? 25 : 5, 200);
        const got = conn.replies.slice(before);
        const gotText = escape(got.map((r) => r.lines.join('\n')).join(' / '), 300);
        if (!complete && !conn.closed && (inSync || step.role === 'body')) sessionFail({ check: 'responsive', detail: `${step.role}: ${got.length} of ${step.expect} replies within ${limit / 1000} s`, got: gotText });

        if (step.check === 'starttls' && !starttlsOffered) {
          if (got[0]?.code === 220) {
            sessionFail({ check: 'starttls-refused', detail: 'STARTTLS not offered in EHLO, yet answered 220 (a TLS session with smtp-server\'s built-in key would follow)', got: gotText });
            break;
          }
        }
        if (step.check === 'longLine') {
          longLineFailed = !(got[0]?.code === 500 && !conn.closedByServer);
          if (longLineFailed && inSync) sessionFail({ check: 'long-line-500', detail: `a ${bytes.length}-octet command line: ${conn.closedByServer ? 'connection closed' : 'no 500'}`, sent: escape(bytes, 80), got: gotText });
        }
        // as for the long line itself: replies can be told apart only while the session is in step with the plan
        if (step.check === 'longLineAfter' && inSync && !longLineFailed && !conn.closed && got[0]?.code !== 250) {
          sessionFail({ check: 'long-line-500', detail: 'NOOP after the over-long line not answered 250', got: gotText });
        }
        if (step.role === 'sync') {
          const greeted = got[got.length - 1];
          inSync = complete && got.length === step.expect && greeted?.code === 250 && greeted.lines[0]!.startsWith(`250${greeted.lines.length > 1 ? '-' : ' '}${target.hostname} `);
          if (inSync) unsynced = '';
          else if (tracked) aborted.add(step.tx!);
          continue;
        }
        if (!tracked) continue;
        const tx = plan.transactions[step.tx!]!;
        const codes = got.map((r) => r.code);
        const refusedOk = (code: number | undefined) => code === 452 || code === 421 || code === 451;
        switch (step.role) {
          case 'mail':
            if (codes[0] !== 250) {
              if (inSync && !refusedOk(codes[0])) sessionFail({ check: 'valid-accepted', detail: 'MAIL of a valid transaction', got: gotText });
              aborted.add(tx.id);
            }
            break;
          case 'rcpt':
            if (codes[0] === 250) okRcpt.set(tx.id, (okRcpt.get(tx.id) ?? 0) + 1);
            else if (inSync && !refusedOk(codes[0])) sessionFail({ check: step.check === 'postmaster' ? 'postmaster-accepted' : 'valid-accepted', detail: 'RCPT of a valid transaction', got: gotText });
            break;
          case 'pipeline': {
            const rcptCodes = codes.slice(1, -1);
            if (inSync && codes[0] === 250 && complete) {
              rcptCodes.forEach((code, i) => {
                if (code === 250 || refusedOk(code)) return;
                sessionFail({ check: step.checkAt?.includes(i + 1) ? 'postmaster-accepted' : 'valid-accepted', detail: `pipelined RCPT ${i + 1} of a valid transaction`, got: gotText });
              });
            } else if (inSync && complete && !refusedOk(codes[0])) sessionFail({ check: 'valid-accepted', detail: 'pipelined MAIL of a valid transaction', got: gotText });
            if (codes[codes.length - 1] !== 354 || !complete) aborted.add(tx.id);
            break;
          }
          case 'data':
            if (codes[0] !== 354) {
              if (inSync && (okRcpt.get(tx.id) ?? 0) > 0 && !refusedOk(codes[0])) sessionFail({ check: 'valid-accepted', detail: 'DATA of a valid transaction', got: gotText });
              aborted.add(tx.id);
            }
            break;
          case 'body': {
            const last = got[got.length - 1];
            const queued = last?.code === 250 ? /queued as ([0-9A-Za-z]+)/.exec(last.lines.join(' '))?.[1] : undefined;
            if (queued) {
              acks.set(queued, { session: plan.session, tx: tx.id, body: tx.body, sha: sha(tx.body), length: tx.body.length, ...(tx.mutation ? { mutation: tx.mutation } : {}), deliveredTo: new Set(), deliveries: 0 });
              unsynced = '';
            } else if (last) {
              refusedAtDataEnd++;
              if (tx.kind === 'valid' && inSync && !refusedOk(last.code)) sessionFail({ check: 'valid-accepted', detail: 'end of DATA of a valid body', got: gotText });
            }
            break;
          }
          default:
            break;
        }
      }
      // the session's end
      const cut = plan.cut !== undefined && stepIndex === plan.cut.step;
      if (!conn.closed) {
        if (cut ? plan.cut!.how === 'end' : plan.end === 'end') {
          conn.end();
          await conn.waitClosed(500);
        } else if (!cut && plan.end === 'quit') {
          await conn.waitClosed(1000);
        }
      }
      // a reply not read (the session ended before it came) may be a 250 for a complete body
      const quitAnswered = !cut && plan.end === 'quit' && conn.replies[conn.replies.length - 1]?.code === 221;
      if (!quitAnswered && /(^|\n)\.\r\n/.test(unsynced)) cutAfterBody.add(plan.session);
    } finally {
      conn.destroy();
      // untracked acknowledgements: garbage that formed a message
      for (const reply of conn.replies) {
        const id = reply.code === 250 ? /queued as ([0-9A-Za-z]+)/.exec(reply.lines.join(' '))?.[1] : undefined;
        if (id && !acks.has(id)) {
          acknowledgedUntracked++;
          acks.set(id, { session: plan.session, sha: '', length: -1, deliveredTo: new Set(), deliveries: 0 });
        }
      }
    }
  };

  const indexes = options.only ?? Array.from({ length: options.sessions }, (_, i) => i);
  let next = 0;
  const runUntil = started + maxMs;
  const worker = async () => {
    while (next < indexes.length && Date.now() < runUntil && !processDead) {
      const session = indexes[next++]!;
      const plan = planSession(options.seed, session, features);
      flavors[plan.flavor] = (flavors[plan.flavor] ?? 0) + 1;
      await runSession(plan);
      sessionsRun++;
      if (options.progress && sessionsRun % 1000 === 0) options.progress(`${sessionsRun} sessions, ${acks.size} acknowledged, ${delivered} delivered, ${(Date.now() - started) / 1000} s`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, indexes.length) }, worker));

  // ---- after the run: every acknowledged message delivered, no slot leaked
  const waitDeadline = Date.now() + 60_000;
  let lastDelivered = -1;
  let lastProgress = Date.now();
  while (!processDead && Date.now() < waitDeadline) {
    collect(false);
    const missing = [...acks.values()].filter((a) => a.deliveries === 0).length;
    if (missing === 0) break;
    if (delivered !== lastDelivered) {
      lastDelivered = delivered;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > 20_000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!processDead) {
    await slotCheck(target, fail, async (id, body) => {
      acks.set(id, { session: -1, body, sha: sha(body), length: body.length, deliveredTo: new Set(), deliveries: 0 });
      const start = Date.now();
      while (Date.now() - start < 15_000) {
        collect(false);
        if (acks.get(id)!.deliveries > 0) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    });
  }
  await new Promise((r) => setTimeout(r, 500)); // late deliveries of unacknowledged messages would show here
  collect(true);
  for (const [id, ack] of acks) {
    if (ack.deliveries === 0) fail({ check: 'acked-delivered', session: ack.session, detail: `message ${id}${ack.tx !== undefined ? ` (transaction ${ack.tx}${ack.mutation ? `, body with ${ack.mutation}` : ''})` : ' (untracked)'} acknowledged, not delivered` });
    else if (ack.length === -1) void 0;
  }
  await watchProcess();
  if (!processDead && (sluice.child.exitCode !== null || sluice.child.signalCode !== null)) fail({ check: 'process-alive', detail: 'Sluice exited during the checks after the run' });
  return {
    seed: options.seed,
    sessionsPlanned: indexes.length,
    sessionsRun,
    acknowledged: acks.size,
    delivered,
    deliveredAfterCut,
    acknowledgedUntracked,
    refusedAtDataEnd,
    deliveryReports,
    durationMs: Date.now() - started,
    peakRssMb: Math.round(peakKb / 1024),
    failures,
    failureCounts,
    flavors,
  };
}

/** As many clients as the listener allows, at once, all greeted with 220; then one message goes through. */
async function slotCheck(target: Target, fail: (f: Failure) => void, delivered: (id: string, body: Buffer) => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  let refused = '';
  for (;;) {
    const clients: SmtpClient[] = [];
    try {
      refused = '';
      for (let i = 0; i < target.maxConnections; i++) clients.push(await SmtpClient.connect(target.sluice.port));
      const greetings = await Promise.all(clients.map((c) => c.reply(10_000).catch((e: Error) => ({ code: 0, text: e.message }))));
      const bad = greetings.filter((g) => g.code !== 220);
      if (bad.length === 0) {
        const client = clients[0]!;
        const hello = await client.command('EHLO after.test');
        const body = `Subject: after the run\r\nX-Fuzz-Id: after\r\n\r\nstill serving\r\n`;
        const reply = hello.code === 250 ? await client.send('after@example.net', ['after@example.com'], body) : hello;
        if (reply.code !== 250) fail({ check: 'slots-not-leaked', detail: 'a message after the run was not accepted', got: escape(reply.text) });
        else {
          const id = /queued as ([0-9A-Za-z]+)/.exec(reply.text)?.[1] ?? '';
          if (!(await delivered(id, Buffer.from(body)))) fail({ check: 'slots-not-leaked', detail: `the message after the run (${id}) was not delivered within 15 s` });
        }
        return;
      }
      refused = `${bad.length} of ${target.maxConnections} clients refused: ${escape(bad[0]!.text)}`;
    } catch (error) {
      refused = `could not connect: ${(error as Error).message}`;
    } finally {
      for (const c of clients) c.close();
    }
    if (Date.now() > deadline) {
      fail({ check: 'slots-not-leaked', detail: refused });
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A summary for people: counts, then failures by check with their first examples. */
export function formatResult(result: FuzzResult, knownDefects: Partial<Record<CheckName, string>> = {}): string {
  const lines = [
    `seed ${result.seed}: ${result.sessionsRun} of ${result.sessionsPlanned} sessions in ${(result.durationMs / 1000).toFixed(1)} s`,
    `acknowledged ${result.acknowledged} (untracked ${result.acknowledgedUntracked}), delivered ${result.delivered} (after a cut before the reply ${result.deliveredAfterCut}), refused at end of DATA ${result.refusedAtDataEnd}, delivery reports ${result.deliveryReports}, peak RSS ${result.peakRssMb} MB`,
    `flavors ${Object.entries(result.flavors).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  ];
  const names = Object.keys(CHECKS) as CheckName[];
  for (const name of names) {
    const count = result.failureCounts[name] ?? 0;
    lines.push(`${count === 0 ? 'ok  ' : 'FAIL'} ${name}${count ? `: ${count} failures` : ''}${count && knownDefects[name] ? ` (known: ${knownDefects[name]})` : ''}`);
    // up to three examples, different kinds first
    const all = result.failures.filter((x) => x.check === name);
    const kind = (f: Failure) => `${f.detail.replace(/\d+/g, '#')} ${(f.got ?? '').slice(0, 24)}`;
    const distinct = all.filter((f, i) => all.findIndex((g) => kind(g) === kind(f)) === i);
    for (const f of [...distinct, ...all.filter((f) => !distinct.includes(f))].slice(0, 3)) {
      lines.push(`     ${f.session !== undefined ? `replay: --seed ${result.seed} --session ${f.session}${f.step !== undefined ? ` (step ${f.step})` : ''}; ` : ''}${f.detail}`);
      if (f.sent) lines.push(`       sent ${f.sent}`);
      if (f.got) lines.push(`       got  ${f.got}`);
    }
  }
  return lines.join('\n');
}
